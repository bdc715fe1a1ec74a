"""Reading the official list files, with one-line errors that name the missing or broken piece."""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sized
from pathlib import Path

from PIL import Image

from workers.datasets.base import DatasetError, ImageRecord

# What PIL raises for a file that is not a decodable image.
UNREADABLE_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def require_dir(dataset: str, path: Path) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{dataset}: {path} not found")
    return path


def require_file(dataset: str, path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"{dataset}: {path} not found")
    return path


def first_existing_dir(dataset: str, candidates: Iterable[Path], what: str) -> Path:
    """The first of several conventional locations that exists (e.g. gt_files_170407/ or ROOT)."""
    candidates = list(candidates)
    for path in candidates:
        if path.is_dir():
            return path
    raise DatasetError(f"{dataset}: {what} not found (looked in {', '.join(map(str, candidates))})")


def read_lines(dataset: str, path: Path) -> list[str]:
    """Non-empty lines without their line ending; inner and trailing spaces are kept (MIT67 names)."""
    require_file(dataset, path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise DatasetError(f"{dataset}: cannot read {path}: {exc.strerror}") from None
    return [line.rstrip("\r\n") for line in text.splitlines() if line.strip()]


def read_fields(dataset: str, path: Path, count: int, kinds: tuple[type, ...] = ()) -> list[list]:
    """Whitespace-separated rows of exactly `count` fields, converted by `kinds` (str by default)."""
    rows = []
    for number, line in enumerate(read_lines(dataset, path), start=1):
        fields = line.split()
        if len(fields) != count:
            raise malformed(dataset, path, number, line, f"expected {count} fields")
        try:
            rows.append([kind(value) for kind, value in zip(kinds, fields)] + fields[len(kinds):])
        except ValueError:
            raise malformed(dataset, path, number, line, "not a number") from None
    return rows


def and_more(items: Sized) -> str:
    """" (and 3 more)" after an error that names the first of `items`; "" when it is the only one."""
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""


def malformed(dataset: str, path: Path, number: int, line: str, why: str) -> DatasetError:
    shown = line if len(line) <= 60 else line[:57] + "..."
    return DatasetError(f"{dataset}: {path} line {number} malformed ({why}): {shown!r}")


class _Listing:
    """File names per folder, listed once: checking 100k images costs one scandir per folder."""

    def __init__(self) -> None:
        self._names: dict[str, frozenset[str]] = {}

    def exists(self, path: Path) -> bool:
        folder = str(path.parent)
        names = self._names.get(folder)
        if names is None:
            try:
                names = frozenset(entry.name for entry in os.scandir(folder) if not entry.is_dir())
            except OSError:
                names = frozenset()
            self._names[folder] = names
        return path.name in names


def require_images(dataset: str, records: Iterable[ImageRecord]) -> None:
    """Every record's file exists; otherwise one line naming the first missing one and the count."""
    listing = _Listing()
    missing = [record.path for record in records if record.path is not None and not listing.exists(record.path)]
    if missing:
        raise DatasetError(f"{dataset}: image {missing[0]} not found{and_more(missing)}")


def list_images(folder: Path, suffixes: tuple[str, ...] = (".jpg", ".jpeg")) -> list[Path]:
    """Image files directly in `folder`, sorted by name (hidden files skipped)."""
    return sorted(
        Path(entry.path)
        for entry in os.scandir(folder)
        if entry.is_file() and not entry.name.startswith(".") and entry.name.lower().endswith(suffixes)
    )


def named_images(dataset: str, folder: Path, pattern: re.Pattern, naming: str) -> list[ImageRecord]:
    """The JPEGs of `folder` as records keyed by file stem; each stem must match `pattern`.

    For the sets whose file names are their ground truth (Holidays' GGGGII, UKBench's numbers):
    a stray name would silently change the groups, so it is refused, as is an empty folder.
    """
    records = []
    for path in list_images(folder):
        if not pattern.match(path.stem):
            raise DatasetError(f"{dataset}: {path} is not named {naming}")
        records.append(ImageRecord(id=path.stem, path=path))
    if not records:
        raise DatasetError(f"{dataset}: no {naming} image in {folder}")
    return records
