"""Engine tests: no Django needed. Replica builders live in tests/workers/replicas.py."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_cli():
    """Run `python -m workers ...` in a fresh interpreter, as a user would; returns CompletedProcess."""

    def run(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
        return subprocess.run(
            [sys.executable, "-m", "workers", *map(str, args)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
        )

    return run
