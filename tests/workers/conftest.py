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


@pytest.fixture(scope="session")
def digits_features(tmp_path_factory):
    """Noisy 16-d precomputed features of every digits image (its class's one-hot x 1.2 plus N(0, 1))."""
    import numpy as np

    from workers.benchmarks import load_digits_benchmark

    data = load_digits_benchmark()
    rng = np.random.default_rng(0)
    table = {}
    for split, records in data.splits.items():
        for record, label in zip(records, data.labels[split]):
            table[record.id] = (np.eye(16)[label] * 1.2 + rng.normal(size=16)).astype(np.float32)
    path = tmp_path_factory.mktemp("digits") / "features.npz"
    np.savez(path, **table)
    return path
