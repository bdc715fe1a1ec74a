"""The engine's one entry for checking a file a user uploads, before anything is stored or queued.

    inspect_upload(WEIGHTS, path, architecture="resnet50")
    inspect_upload(ONNX, path)
    inspect_upload(FEATURES, path, benchmark="mit67", data_root=ROOT)

Each sniffs the format, opens the file with a loader that cannot run code (`workers.safeload`)
and checks it against the architecture or the benchmark, exactly as the evaluation will open it
later. A refusal is an `UploadRefused` subclass (or a `DatasetError` when the benchmark's data
cannot be read here) whose message is one sentence for the submitter.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workers import safeload
from workers.benchmarks import get_benchmark
from workers.contract import EngineError
from workers.datasets.base import DatasetError
from workers.provenance import file_sha256

WEIGHTS = "weights"       # an architecture's weights (safetensors or a PyTorch state_dict)
ONNX = "onnx"             # an ONNX graph whose first output is the feature
FEATURES = "features"     # precomputed features (.npz) for one benchmark
KINDS = (WEIGHTS, ONNX, FEATURES)


@dataclass(frozen=True)
class UploadInspection:
    format: str           # safeload's format name: safetensors, torch_zip, torch_legacy, onnx, npz
    sha256: str           # of the file's bytes: recorded with every result made from it

    @property
    def suffix(self) -> str:
        """The file name ending to store it under (the submitter's own name is never used)."""
        return safeload.SUFFIXES[self.format]


def inspect_upload(kind: str, path: Path, *, architecture: str | None = None, benchmark: str | None = None,
                   data_root: Path | None = None, name: str = "") -> UploadInspection:
    """Check an uploaded file of `kind` (WEIGHTS, ONNX or FEATURES); raises with a message if refused.

    `name` is how a refusal may call the file; by default it names none (an upload's temporary file
    name, or a server path, means nothing to the person who sent it).
    """
    path = Path(path)
    if kind == WEIGHTS:
        from workers.models import check_weights

        if not architecture:
            raise EngineError("weights need the architecture they are for")
        fmt = check_weights(path, architecture, source=name)
    elif kind == ONNX:
        fmt = safeload.check_onnx(path)
    elif kind == FEATURES:
        if not benchmark:
            raise EngineError("precomputed features need the benchmark they are for")
        target = get_benchmark(benchmark)
        try:
            expected = target.image_ids(data_root)
        except DatasetError as exc:
            raise DatasetError(f"Benchmark '{benchmark}' cannot be read here: {exc}") from None
        table = safeload.read_features(path, max_images=len(expected))
        safeload.check_features_cover(table, expected, benchmark=benchmark)
        fmt = safeload.NPZ
    else:
        raise EngineError(f"unknown kind of upload {kind!r}: use one of {', '.join(KINDS)}")
    return UploadInspection(format=fmt, sha256=file_sha256(path))
