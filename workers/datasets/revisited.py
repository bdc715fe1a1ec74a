"""Revisited Oxford and Paris (Radenović et al., CVPR 2018), as revisitop lays them out:

    ROOT/jpg/<name>.jpg          the images of Oxford 5k / Paris 6k (4,993 / 6,322 kept)
    ROOT/gnd_roxford5k.pkl       (gnd_rparis6k.pkl) a dict: imlist (database names), qimlist (the 70
                                 query names), gnd (per query: bbx, and easy / hard / junk lists of
                                 0-based database indices)

The pickle is read by a restricted unpickler (`workers.safeload.load_ground_truth_pickle`): nothing
in it runs. Queries are cropped to their `bbx`. The optional +1M distractors (`revisitop1m`) are a
folder given as `distractors=PATH` (PATH/jpg/<name>.jpg listed in PATH/revisitop1m.txt), appended
to the database after the originals, so the ground truth's indices stay as they are. Scored by
`workers.metrics.revisited_map` under the Easy, Medium and Hard protocols.
"""
from __future__ import annotations

from pathlib import Path

from workers.contract import UploadRefused
from workers.datasets._files import read_lines, require_dir, require_file, require_images
from workers.datasets.base import DatasetError, ImageRecord, RetrievalData, RetrievalQuery


def _index_list(dataset: str, query: str, key: str, values, size: int) -> list[int]:
    try:
        indices = [int(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]
    except (TypeError, ValueError):
        raise DatasetError(f"{dataset}: ground truth of {query}: {key} is not a list of indices") from None
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise DatasetError(f"{dataset}: ground truth of {query}: {key} index {bad[0]} outside the {size} images")
    return indices


def _load(root: Path, dataset: str, distractors: str | None, verify_images: bool) -> RetrievalData:
    from workers.safeload import load_ground_truth_pickle

    root = Path(root)
    gnd_file = require_file(dataset, root / f"gnd_{dataset}.pkl")
    try:
        truth = load_ground_truth_pickle(gnd_file)
    except UploadRefused as exc:
        raise DatasetError(f"{dataset}: {exc}") from None
    for key in ("imlist", "qimlist", "gnd"):
        if not isinstance(truth.get(key), (list, tuple)):
            raise DatasetError(f"{dataset}: {gnd_file.name} has no {key} list")
    imlist, qimlist, gnd = [str(n) for n in truth["imlist"]], [str(n) for n in truth["qimlist"]], truth["gnd"]
    if len(gnd) != len(qimlist):
        raise DatasetError(f"{dataset}: {len(qimlist)} query names but ground truth for {len(gnd)}")
    jpg = require_dir(dataset, root / "jpg")
    database = [ImageRecord(id=name, path=jpg / f"{name}.jpg") for name in imlist]
    queries, indexed = [], []
    for name, entry in zip(qimlist, gnd):
        if not isinstance(entry, dict):
            raise DatasetError(f"{dataset}: ground truth of {name} is not a dict")
        lists = {key: _index_list(dataset, name, key, entry.get(key, []), len(imlist))
                 for key in ("easy", "hard", "junk")}
        try:
            box = tuple(float(v) for v in (entry["bbx"].tolist() if hasattr(entry["bbx"], "tolist") else entry["bbx"]))
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{dataset}: ground truth of {name} has no bbx of 4 numbers") from None
        if len(box) != 4:
            raise DatasetError(f"{dataset}: ground truth of {name} has no bbx of 4 numbers")
        image = ImageRecord(id=name, path=jpg / f"{name}.jpg", box=box)
        queries.append(RetrievalQuery(id=name, image=image, name=name,
                                      good=[imlist[i] for i in lists["easy"] + lists["hard"]],
                                      junk=[imlist[i] for i in lists["junk"]]))
        indexed.append(lists)
    info = {"root": str(root), "ground_truth": gnd_file.name, "revisited_gnd": indexed, "distractors": 0}
    if distractors:
        folder = Path(distractors)
        names = read_lines(dataset, require_file(dataset, folder / "revisitop1m.txt"))
        extra = [ImageRecord(id=f"r1m/{name.removesuffix('.jpg')}", path=folder / "jpg" /
                             (name if name.endswith(".jpg") else f"{name}.jpg")) for name in names]
        database += extra
        info["distractors"] = len(extra)
    require_images(dataset, database + [query.image for query in queries])
    if verify_images:
        from workers.datasets import verify_images as decode_all

        data = RetrievalData(name=dataset, database=database, queries=queries, metric="revisited_map", info=info)
        broken = decode_all(data)
        if broken:
            raise DatasetError(f"{dataset}: image {broken[0]} cannot be decoded")
    return RetrievalData(name=dataset, database=database, queries=queries, metric="revisited_map", info=info)


def load_roxford5k(root: Path, distractors: str | None = None, verify_images: bool = False) -> RetrievalData:
    """ROOT/jpg/*.jpg and ROOT/gnd_roxford5k.pkl; `distractors`: a revisitop1m folder (+1M)."""
    return _load(root, "roxford5k", distractors, verify_images)


def load_rparis6k(root: Path, distractors: str | None = None, verify_images: bool = False) -> RetrievalData:
    """ROOT/jpg/*.jpg and ROOT/gnd_rparis6k.pkl; `distractors`: a revisitop1m folder (+1M)."""
    return _load(root, "rparis6k", distractors, verify_images)
