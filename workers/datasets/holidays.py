"""INRIA Holidays: `jpg/GGGGII.jpg`, 1,491 images in 500 scene groups (GGGG); the image with
II = 00 is the group's query, the group's other images are its relevant results. Scored by the
official `holidays_map.py` mAP. Some distributed images are rotated; pass `folder=` to read a
manually rotated copy instead, and the choice is recorded in `info`.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from workers.datasets._files import named_images, require_dir
from workers.datasets.base import DatasetError, RetrievalData, RetrievalQuery

NAME = "holidays"
IMAGE_NAME = re.compile(r"^\d{6}$")


def load(root: Path, folder: str = "jpg") -> RetrievalData:
    """Read ROOT/<folder>/*.jpg (default ROOT/jpg) as the database and its II = 00 queries."""
    images = require_dir(NAME, Path(root) / folder)
    database = named_images(NAME, images, IMAGE_NAME, "GGGGII.jpg")
    groups: dict[str, list[str]] = defaultdict(list)
    for record in database:
        groups[record.id[:4]].append(record.id)
    queries = []
    for record in database:
        if record.id.endswith("00"):
            others = [image_id for image_id in groups[record.id[:4]] if image_id != record.id]
            if not others:
                raise DatasetError(f"{NAME}: query {record.id} has no other image in its group")
            queries.append(RetrievalQuery(id=record.id, image=record, good=others))
    ids = {record.id for record in database}
    without_query = sorted(group for group in groups if f"{group}00" not in ids)
    if without_query:
        raise DatasetError(f"{NAME}: group {without_query[0]} has no query image {without_query[0]}00.jpg")
    return RetrievalData(
        name=NAME, database=database, queries=queries, metric="holidays_map",
        info={"root": str(images), "images_folder": folder},
    )
