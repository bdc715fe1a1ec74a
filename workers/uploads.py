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
MODEL_FOLDER = "model_folder"   # a zip of a model folder in timm's, OpenCLIP's or transformers' Hub layout
KINDS = (WEIGHTS, ONNX, FEATURES, MODEL_FOLDER)


@dataclass(frozen=True)
class UploadInspection:
    format: str           # safeload's format name: safetensors, torch_zip, torch_legacy, onnx, npz, model_folder
    sha256: str           # of the file's bytes: recorded with every result made from it
    about: dict | None = None   # a model folder: its family, preprocessing and readout

    @property
    def suffix(self) -> str:
        """The file name ending to store it under (the submitter's own name is never used)."""
        return ".zip" if self.format == MODEL_FOLDER else safeload.SUFFIXES[self.format]


def inspect_upload(kind: str, path: Path, *, architecture: str | None = None, benchmark: str | None = None,
                   data_root: Path | None = None, name: str = "", folder_into: Path | None = None,
                   max_folder_bytes: int = 8 * 2**30) -> UploadInspection:
    """Check an uploaded file of `kind` (WEIGHTS, ONNX, FEATURES or MODEL_FOLDER); raises if refused.

    `name` is how a refusal may call the file; by default it names none (an upload's temporary file
    name, or a server path, means nothing to the person who sent it). A MODEL_FOLDER zip is
    extracted into `folder_into` (left empty of it when refused) and its model built and loaded.
    """
    path = Path(path)
    about = None
    if kind == WEIGHTS:
        from workers.library_models import check_weights

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
    elif kind == MODEL_FOLDER:
        import shutil

        from workers.library_models import create_feature_model

        if folder_into is None:
            raise EngineError("a model folder needs a place to be extracted to")
        # safetensors of trained weights barely deflate: a folder that unpacks to many times its zip's
        # size is a zip bomb, refused as it is written.
        limit = min(max_folder_bytes, 4 * path.stat().st_size + 16 * 2**20)
        safeload.extract_model_folder(path, folder_into, max_bytes=limit)
        try:
            model = create_feature_model(folder=folder_into, weights_name=name)
        except EngineError:
            shutil.rmtree(folder_into, ignore_errors=True)
            raise
        described = model.describe()
        about = {key: described.get(key) for key in ("family", "architecture", "readout", "data_config")}
        fmt = MODEL_FOLDER
    else:
        raise EngineError(f"unknown kind of upload {kind!r}: use one of {', '.join(KINDS)}")
    return UploadInspection(format=fmt, sha256=file_sha256(path), about=about)
