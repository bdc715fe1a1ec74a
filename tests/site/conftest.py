"""Site tests: a writable copy of the snapshot for tests that break the data on purpose."""
import shutil
from pathlib import Path

import pytest
from snapshot_source import SNAPSHOT_DIR


@pytest.fixture
def snapshot_copy(tmp_path) -> Path:
    """A writable copy of fixtures/snapshot, for tests that break the data on purpose."""
    target = tmp_path / "snapshot"
    shutil.copytree(SNAPSHOT_DIR, target)
    return target
