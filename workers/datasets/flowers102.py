"""Oxford Flowers 102: `jpg/image_00001.jpg` ..., `imagelabels.mat` (`labels`, 1 x 8189, classes
1-102) and `setid.mat` (`trnid`, `valid`, `tstid`: 1-based image numbers). Splits train / val
(10 per class each) / test (6,149). Scored by mean class accuracy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from workers.datasets._files import require_dir, require_file, require_images
from workers.datasets.base import ClassificationData, DatasetError, ImageRecord

NAME = "flowers102"
SPLIT_VARIABLES = {"train": "trnid", "val": "valid", "test": "tstid"}


def _load_mat(path: Path) -> dict:
    import scipy.io  # imported here: it costs a second at start-up, and only Flowers needs it

    require_file(NAME, path)
    try:
        return scipy.io.loadmat(str(path))
    except (ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as exc:
        raise DatasetError(f"{NAME}: {path} is not a readable .mat file ({type(exc).__name__})") from None


def _variable(path: Path, contents: dict, name: str) -> np.ndarray:
    if name not in contents:
        raise DatasetError(f"{NAME}: {path} has no variable '{name}'")
    values = np.asarray(contents[name])
    if values.ndim > 2 or (values.ndim == 2 and min(values.shape) != 1) or not np.issubdtype(values.dtype, np.number):
        raise DatasetError(f"{NAME}: {path} variable '{name}' is not a 1 x n vector of numbers")
    return values.ravel().astype(np.int64)


def load(root: Path) -> ClassificationData:
    """Read the official .mat labels and splits of ROOT against ROOT/jpg/."""
    root = Path(root)
    images = require_dir(NAME, root / "jpg")
    label_path = root / "imagelabels.mat"
    labels_all = _variable(label_path, _load_mat(label_path), "labels")
    if labels_all.size == 0 or labels_all.min() < 1:
        raise DatasetError(f"{NAME}: {label_path} 'labels' must hold classes numbered from 1")
    n_classes = int(labels_all.max())
    setid_path = root / "setid.mat"
    setid = _load_mat(setid_path)
    splits: dict[str, list[ImageRecord]] = {}
    labels: dict[str, np.ndarray] = {}
    for split, variable in SPLIT_VARIABLES.items():
        numbers = _variable(setid_path, setid, variable)
        if numbers.size and (numbers.min() < 1 or numbers.max() > labels_all.size):
            raise DatasetError(
                f"{NAME}: {setid_path} '{variable}' refers to image numbers outside 1..{labels_all.size}"
            )
        splits[split] = [
            ImageRecord(id=f"image_{n:05d}", path=images / f"image_{n:05d}.jpg") for n in numbers.tolist()
        ]
        labels[split] = labels_all[numbers - 1] - 1
        require_images(NAME, splits[split])
    return ClassificationData(
        name=NAME,
        classes=[str(k) for k in range(1, n_classes + 1)],
        splits=splits,
        labels=labels,
        info={"root": str(root)},
    )
