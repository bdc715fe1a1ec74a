"""Where a result came from: software versions, hardware, code commit, file hashes, date.

Recorded with every `EvaluationResult` so that a number on the leaderboard can be traced to the
exact engine, libraries, machine and files that produced it. The one place for each of these rules:
the site and the Celery tasks read them from here (through leaderboard/engine.py) or from the result.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ("torch", "torchvision", "scikit-learn", "numpy", "scipy", "pillow", "onnxruntime",
             "efficientnet-lite-pytorch")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks; remembered per (path, mtime, size)."""
    stat = Path(path).stat()
    return _file_sha256_cached(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _file_sha256_cached(path: str, _mtime_ns: int, _size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hardware(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"device": device, "cpu": cpu_model(), "cpu_count": os.cpu_count()}
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def hardware_label(device: str = "auto") -> str:
    """One line naming what runs the evaluation: "GPU: <name>" or "CPU: <model> (<n> threads)"."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU: {cpu_model()} ({torch.get_num_threads()} threads)"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The engine's commit (`git rev-parse HEAD`, "+dirty" with local changes), else SHELFMARK_GIT_COMMIT."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5, check=False).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")   # uncommitted changes: not reproducible
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("SHELFMARK_GIT_COMMIT", "unknown")


def collect(device: str, model: dict | None = None, protocol_version: str = "") -> dict[str, Any]:
    return {
        "packages": package_versions(),
        "python": platform.python_version(),
        "protocol_version": protocol_version,
        "model": model or {},
        "hardware": hardware(device),
        "git_commit": git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
