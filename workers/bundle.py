"""Reproduction bundles: one zip per evaluated result that anyone can re-score with numpy + scikit-learn.

Contents: `features.npz` (the engine's artifact: post-processed features, labels and image ids of
every split, the SVM's C), `units.npz` (what the score and its interval are computed from: the
predictions, class scores or per-query values of every test unit), `splits.json` (the ids of each
split), `protocol.json` (the protocol's name and settings, the recorded score and its 95% interval),
`provenance.json`, `reproduce.py` (a standalone copy of the protocols, metrics and the bootstrap) and
`SHA256SUMS`. `python reproduce.py` checks the sums, recomputes the predictions with the recorded
protocol, the score and the bootstrap interval, and exits 0 iff they equal the recorded ones (to
1e-6; a protocol solved with torch, the accelerator's path of the SVMs, the linear probe and k-NN, is
re-solved with scikit-learn and numpy, to 0.5 points).
Nothing here imports Django.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE = 1e-6
TORCH_SOLVER_TOLERANCE = 0.005   # solved with torch (workers/accelerated.py), re-solved by scikit-learn / numpy


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_ids(features_npz: Path) -> dict[str, list[str]]:
    """The image ids of each split stored in the engine's features.npz."""
    with np.load(features_npz, allow_pickle=False) as stored:
        names = [n for n in ("train_ids", "test_ids", "database_ids", "query_ids") if n in stored.files]
        return {name[: -len("_ids")]: [str(i) for i in stored[name]] for name in names}


def write_bundle(target: Path, *, features_npz: Path, protocol: dict[str, Any], provenance: dict[str, Any],
                 score: float, metric: str, units_npz: Path | None = None,
                 confidence_interval: dict[str, Any] | None = None, readme: str = "") -> Path:
    """Write the zip atomically at `target` (a temp file in the same folder, then renamed).

    `protocol` is the protocol's settings (its "protocol" names it: svm, knn, linear_probe, fewshot,
    ranking, easy, medium, hard); `units_npz` and `confidence_interval` let reproduce.py check the interval.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    features = Path(features_npz).read_bytes()
    tolerance = TORCH_SOLVER_TOLERANCE if protocol.get("solver") == "torch" else TOLERANCE
    members: dict[str, bytes] = {
        "features.npz": features,
        "splits.json": _json_bytes(split_ids(features_npz)),
        "protocol.json": _json_bytes({**protocol, "metric": metric, "recorded_score": score,
                                      "recorded_interval": confidence_interval, "tolerance": tolerance}),
        "provenance.json": _json_bytes(provenance),
        **({"units.npz": Path(units_npz).read_bytes()} if units_npz else {}),
        "reproduce.py": REPRODUCE_PY.encode("utf-8"),
        "README.txt": (readme or _README).encode("utf-8"),
    }
    members["SHA256SUMS"] = "".join(f"{_sha256(data)}  {name}\n" for name, data in members.items()).encode()
    handle, tmp = tempfile.mkstemp(dir=target.parent, suffix=".zip.tmp")
    os.close(handle)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, default=str).encode("utf-8")


_README = """Reproduction bundle of a Shelfmark result.

    python reproduce.py        # needs numpy and scikit-learn only

checks SHA256SUMS, recomputes the predictions from features.npz with the recorded protocol and its
settings (protocol.json), the score and its 95% bootstrap interval (units.npz), and exits 0 iff they
match the recorded ones. provenance.json says how the features were produced (model and weights
hash, code and protocol versions, hardware, date).
"""

REPRODUCE_PY = (Path(__file__).with_name("reproduce_template.py")).read_text(encoding="utf-8")
