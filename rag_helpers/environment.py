"""Report what the course will run on: versions, device, precision, data, and which LLM answers.

Secrets are reported only as "set" or "not set"; paths inside the project are shown relative to it.
`describe_machine` is the one description of the hardware that benchmarks and the notebook timings
record next to their figures.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import PROJECT_ROOT, SAMPLE_CORPUS_DIR, Settings, safe_url
from .documents import DEFAULT_PATTERNS

Row = tuple[str, str]

# The libraries whose versions matter when something behaves differently on another machine.
REPORTED_PACKAGES: tuple[str, ...] = (
    "torch",
    "transformers",
    "sentence-transformers",
    "chromadb",
    "huggingface_hub",
    "numpy",
    "ipywidgets",
)


def package_version(name: str) -> str:
    """The installed version of a distribution, or a hint to install it."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed (run `make setup`)"


def display_path(path: str | Path) -> str:
    """A path for printing: relative to the project when inside it, then a temporary folder, then ~ for home."""
    path = Path(path).expanduser()
    try:
        relative = path.resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        pass
    else:
        return relative.as_posix() or "."
    # A temporary folder's random name means nothing to a reader and would differ in every saved output.
    temporary = Path(tempfile.gettempdir()).resolve()
    if path.resolve().is_relative_to(temporary) and path.resolve() != temporary:
        return f"<temporary folder>/{path.name}"
    home = Path.home()
    if home != Path(home.anchor):
        try:
            return "~/" + path.relative_to(home).as_posix()
        except ValueError:
            pass
    return str(path)


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo, macOS sysctl), or what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        result = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_kind() -> str:
    """The kind of CPU as far as the figures care: its widest vector unit and whether it has native bf16."""
    from .embeddings import cpu_has_native_bf16

    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    vectors = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else platform.machine()
    return f"{vectors}, {'native' if cpu_has_native_bf16() else 'no native'} bf16"


def gpu_names() -> list[str]:
    """NVIDIA GPUs `nvidia-smi` lists (the course uses one automatically); empty without one."""
    if shutil.which("nvidia-smi") is None:
        return []
    result = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, check=False
    )
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def describe_machine() -> dict[str, Any]:
    """What a measurement depends on: CPU model and kind, usable cores, GPUs, Python, and the load
    average when it was taken (other processes competing for the CPU slow every figure down)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cpu_kind": cpu_kind(),
        "cores": usable,
        "gpus": gpu_names(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def device_row(settings: Settings) -> Row:
    """The device the embedding model will use, and why."""
    from .embeddings import resolve_device

    try:
        device = resolve_device(settings.device)
    except (RuntimeError, ValueError) as error:
        return "Device", f"problem: {error}"
    how = "chosen automatically" if settings.device == "auto" else "set by RAG_DEVICE"
    if device.startswith("cuda"):
        import torch

        return "Device", f"{device}: {torch.cuda.get_device_name(device)} ({how})"
    if device == "cpu" and settings.device == "auto":
        return "Device", "cpu (no CUDA GPU or Apple MPS found)"
    return "Device", f"{device} ({how})"


def precision_row(settings: Settings) -> Row:
    """The number format the embedding model will compute in, and why."""
    from .embeddings import resolve_device, resolve_precision

    try:
        device = resolve_device(settings.device)
        precision = resolve_precision(settings.precision, device)
    except (RuntimeError, ValueError) as error:
        return "Precision", f"problem: {error}"
    if settings.precision != "auto":
        return "Precision", f"{precision} (set by RAG_PRECISION)"
    reason = {"fp16": "auto: half precision on the GPU", "bf16": "auto: this CPU computes bf16 natively"}
    return "Precision", f"{precision} ({reason.get(precision, 'auto: full precision')})"


def embedding_model_row(settings: Settings) -> Row:
    """The embedding model, and whether it is available offline."""
    from .embeddings import packaged_model_dir

    where = "bundled copy, works offline" if packaged_model_dir(settings.embedding_model) else "downloads on first use"
    return "Embedding model", f"{settings.embedding_model} ({where})"


def corpus_row(directory: Path = SAMPLE_CORPUS_DIR) -> Row:
    """How many documents the bundled sample corpus holds."""
    if not directory.is_dir():
        return "Sample corpus", f"missing: {display_path(directory)}"
    files = {
        p
        for pattern in DEFAULT_PATTERNS
        for p in directory.rglob(pattern)
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    }
    return "Sample corpus", f"{len(files)} files in {display_path(directory)}"


def index_row(settings: Settings) -> Row:
    """Where the vector index lives."""
    if settings.chroma_host:
        return "Vector index", f"Chroma server at {settings.chroma_host}:{settings.chroma_port}"
    return "Vector index", f"{display_path(settings.chroma_path)} (embedded Chroma, collection {settings.collection!r})"


def llm_rows(settings: Settings) -> list[Row]:
    """Whether a token is set (never its value) and which backend will answer questions."""
    from .backends import choose_backend

    settings_file = display_path(settings.env_file) if settings.env_file else "none (optional: cp .env.example .env)"
    rows = [
        ("Settings file", settings_file),
        ("Hugging Face token", "set (hidden)" if settings.hf_token else "not set"),
    ]
    try:
        backend = choose_backend(settings)
    except ValueError as error:
        return [*rows, ("LLM backend", f"problem: {error}")]
    if backend == "hf":
        answer = f"hf: {settings.llm_model} on Hugging Face Inference Providers"
    elif backend == "openai":
        url = safe_url(settings.llm_base_url) if settings.llm_base_url else "no LLM_BASE_URL set"
        answer = f"openai: {settings.llm_model} at {url}"
    else:
        answer = "offline: answers are sentences extracted from the sources (no LLM)"
    return [*rows, ("LLM backend", answer)]


def environment_report(settings: Settings) -> list[Row]:
    """(item, value) rows describing versions, device, precision, data and LLM set-up."""
    from . import __version__

    rows: list[Row] = [
        ("Python", platform.python_version()),
        ("rag_helpers", __version__),
        *((name, package_version(name)) for name in REPORTED_PACKAGES),
        device_row(settings),
        precision_row(settings),
        embedding_model_row(settings),
        corpus_row(),
        index_row(settings),
        *llm_rows(settings),
    ]
    return rows


def format_report(rows: list[Row], title: str = "Environment") -> str:
    """Rows as a two-column text table with a title line."""
    if not rows:
        return f"{title}\n(nothing to report)"
    width = max(len(name) for name, _ in rows)
    rule = "-" * (width + 2 + max(len(value) for _, value in rows))
    lines = [title, rule, *(f"{name.ljust(width)}  {value}" for name, value in rows), rule]
    return "\n".join(lines)
