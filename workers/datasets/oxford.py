"""Oxford 5k and Paris 6k: 55 queries (11 landmarks x 5), each an image cropped to a box, with
`<landmark>_<k>_{good,ok,junk,query}.txt` ground truth (names without `.jpg`). Scored by the
official `compute_ap` mAP. The Paris archive ships 20 corrupt files: they are skipped and listed
in `info["skipped"]`; the ground truth is kept as distributed.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image

from workers.datasets._files import (
    UNREADABLE_IMAGE_ERRORS,
    first_existing_dir,
    list_images,
    malformed,
    read_lines,
    require_dir,
)
from workers.datasets.base import DatasetError, ImageRecord, RetrievalData, RetrievalQuery


def _image_id(name: str) -> str:
    """Oxford query files prefix the image with `oxc1_`; ground-truth names may carry `.jpg`."""
    name = name.strip()
    name = name.removeprefix("oxc1_")
    return name.removesuffix(".jpg")


def _ground_truth(dataset: str, gt_dir: Path, by_id: dict[str, ImageRecord]) -> list[RetrievalQuery]:
    query_files = sorted(gt_dir.glob("*_query.txt"))
    if not query_files:
        raise DatasetError(f"{dataset}: no *_query.txt ground-truth file in {gt_dir}")
    queries = []
    for query_file in query_files:
        query_name = query_file.name[: -len("_query.txt")]
        lines = read_lines(dataset, query_file)
        fields = lines[0].split() if len(lines) == 1 else []
        if len(fields) != 5:
            raise malformed(dataset, query_file, 1, lines[0] if lines else "", "expected '<image> x1 y1 x2 y2'")
        try:
            box = tuple(float(value) for value in fields[1:])
        except ValueError:
            raise malformed(dataset, query_file, 1, lines[0], "box is not numbers") from None
        image_id = _image_id(fields[0])
        if image_id not in by_id:
            raise DatasetError(f"{dataset}: query image {image_id}.jpg of {query_file.name} not found")
        lists = {
            kind: [_image_id(line) for line in read_lines(dataset, gt_dir / f"{query_name}_{kind}.txt")]
            for kind in ("good", "ok", "junk")
        }
        if not lists["good"] and not lists["ok"]:
            raise DatasetError(f"{dataset}: query {query_name} has no good or ok image")
        query_image = ImageRecord(id=image_id, path=by_id[image_id].path, box=box)
        queries.append(RetrievalQuery(id=image_id, image=query_image, name=query_name, **lists))
    return queries


def _readable(path: Path, full: bool) -> bool:
    """Whether PIL can open the file (its header, or every pixel when `full`)."""
    try:
        with Image.open(path) as image:
            if full:
                image.load()
        return True
    except UNREADABLE_IMAGE_ERRORS:
        return False


def _load(
    dataset: str,
    images: list[Path],
    gt_dir: Path,
    root: Path,
    check: Callable[[Path], bool] | None,
) -> RetrievalData:
    skipped = [] if check is None else [path.stem for path in images if not check(path)]
    skipped_set = set(skipped)
    database = [ImageRecord(id=path.stem, path=path) for path in images if path.stem not in skipped_set]
    if not database:
        raise DatasetError(f"{dataset}: no readable image found")
    by_id = {record.id: record for record in database}
    queries = _ground_truth(dataset, gt_dir, by_id)
    referenced = {name for query in queries for name in query.good + query.ok + query.junk}
    absent = sorted(referenced - set(by_id))
    info = {"root": str(root), "ground_truth": str(gt_dir), "skipped": skipped}
    if absent:
        info["ground_truth_not_in_database"] = absent
    return RetrievalData(name=dataset, database=database, queries=queries, metric="oxford_map", info=info)


def load_oxford5k(root: Path, verify_images: bool = False) -> RetrievalData:
    """ROOT/oxbuild_images/*.jpg with ground truth in ROOT/gt_files_170407/ (or ROOT itself)."""
    root = Path(root)
    images = list_images(require_dir("oxford5k", root / "oxbuild_images"))
    gt_dir = first_existing_dir("oxford5k", [root / "gt_files_170407", root], "ground truth")
    check = (lambda path: _readable(path, full=True)) if verify_images else None
    return _load("oxford5k", images, gt_dir, root, check)


def load_paris6k(root: Path, verify_images: bool = False) -> RetrievalData:
    """ROOT/paris/<landmark>/*.jpg with ground truth in ROOT/paris_120310/ (or ROOT itself).

    Unreadable files are skipped: by header (cheap) by default, by full decoding with
    `verify_images`.
    """
    root = Path(root)
    landmarks = require_dir("paris6k", root / "paris")
    images = sorted(
        (path for folder in sorted(landmarks.iterdir()) if folder.is_dir() for path in list_images(folder)),
        key=lambda path: path.name,
    )
    gt_dir = first_existing_dir("paris6k", [root / "paris_120310", root], "ground truth")
    return _load("paris6k", images, gt_dir, root, lambda path: _readable(path, full=verify_images))
