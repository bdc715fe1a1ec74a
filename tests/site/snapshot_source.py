"""Reads of the snapshot's source files, independent of the loader, for tests to compare with."""
import functools
from pathlib import Path

import bibtexparser
import yaml
from django.conf import settings

SNAPSHOT_DIR = Path(settings.BASE_DIR) / "fixtures" / "snapshot"


def source_snapshot(directory: Path = SNAPSHOT_DIR) -> dict:
    with open(directory / "snapshot.yaml", encoding="utf-8") as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def source_bib_keys(directory: Path = SNAPSHOT_DIR) -> tuple[str, ...]:
    with open(directory / "references.bib", encoding="utf-8") as handle:
        return tuple(entry["ID"] for entry in bibtexparser.load(handle).entries)


def source_benchmarks(directory: Path = SNAPSHOT_DIR) -> dict:
    with open(directory / "benchmarks.yaml", encoding="utf-8") as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
