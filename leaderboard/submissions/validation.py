"""Checks an uploaded file before anything is stored or queued.

Order matters: the format is sniffed from magic bytes first, then the file is opened only by a
loader that cannot run code (safetensors, `torch.load(weights_only=True)`, protobuf for ONNX,
`numpy.load(allow_pickle=False)`), then its content is checked against the architecture or the
benchmark. Every refusal is a `SubmissionRefused` with one sentence the form shows as is.
"""
from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

import numpy as np

from . import engine


class SubmissionRefused(Exception):
    """A submission that cannot be accepted; the message is for the submitter."""


SAFETENSORS = "safetensors"
TORCH_ZIP = "torch_zip"
ONNX = "onnx"
NPZ = "npz"

_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
MAX_FEATURE_DIM = 16384     # values per precomputed feature vector (the 2014 features had 4096)
_MAX_ID_BYTES = 1024        # room per image in the `ids` array of the (ids, features) layout


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def sniff_format(path: Path) -> str:
    """The file's format from its first bytes (never from its name)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(16)
    if len(head) < 8:
        raise SubmissionRefused("The file is empty or too short to be a model, weights or features file.")
    if head[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if names and all(name.endswith(".npy") for name in names):
            return NPZ
        if any(name.endswith("data.pkl") for name in names):
            return TORCH_ZIP
        raise SubmissionRefused("The zip archive is neither a PyTorch state_dict (torch.save) nor an .npz file.")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise SubmissionRefused(
            "Plain pickle files are not accepted (they can run code): save the weights with "
            "torch.save(model.state_dict()) (zip format) or as safetensors."
        )
    header_length = struct.unpack("<Q", head[:8])[0]
    if 2 <= header_length <= min(_SAFETENSORS_MAX_HEADER, size - 8) and head[8:9] == b"{":
        return SAFETENSORS
    if head[:1] == b"\x08":  # ModelProto field 1 (ir_version), a varint: how every ONNX file begins
        return ONNX
    raise SubmissionRefused(
        "Unrecognised file format: expected safetensors, a PyTorch state_dict (zip), ONNX or .npz."
    )


def load_state_dict(path: Path, fmt: str) -> dict:
    """Tensors by name, loaded without running any code from the file."""
    if fmt == SAFETENSORS:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            with open(path, "rb") as handle:
                header_length = struct.unpack("<Q", handle.read(8))[0]
                json.loads(handle.read(header_length))
            return load_file(str(path), device="cpu")
        except (SafetensorError, ValueError, OSError) as exc:
            raise SubmissionRefused(f"The safetensors file is malformed: {_first_line(exc)}") from None
    if fmt == TORCH_ZIP:
        import pickle

        import torch

        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise SubmissionRefused(
                "The weights file contains Python objects other than tensors and was refused "
                f"(it could run code when loaded): {_first_line(exc)}"
            ) from None
        except (RuntimeError, ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
            raise SubmissionRefused(f"The PyTorch file could not be read: {_first_line(exc)}") from None
        for wrapper in ("state_dict", "model"):  # the same wrappers the engine unwraps
            if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
                loaded = loaded[wrapper]
        if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            raise SubmissionRefused("The PyTorch file is not a state_dict (a dict of tensor names to tensors).")
        if loaded and all(key.startswith("module.") for key in loaded):  # saved from DataParallel
            loaded = {key[len("module."):]: value for key, value in loaded.items()}
        return loaded
    raise SubmissionRefused("Weights must be a safetensors file or a PyTorch state_dict (zip); this file is "
                            f"{_describe(fmt)}.")


def check_weights(path: Path, architecture: str) -> str:
    """Refuses weights that don't load safely or don't fit `architecture`; returns the format."""
    fmt = sniff_format(path)
    state_dict = load_state_dict(path, fmt)
    problem = engine.weights_mismatch(architecture, state_dict)
    if problem:
        raise SubmissionRefused(f"The weights don't fit {architecture}: {problem}")
    return fmt


def check_onnx(path: Path) -> str:
    fmt = sniff_format(path)
    if fmt != ONNX:
        raise SubmissionRefused(f"Expected an ONNX model; this file is {_describe(fmt)}.")
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as exc:
        raise SubmissionRefused(f"The ONNX model is invalid: {_first_line(exc)}") from None
    if not model.graph.input or not model.graph.output:
        raise SubmissionRefused("The ONNX model has no input or no output.")
    # One file is uploaded, so every tensor must be inside it. A tensor stored "externally" names a
    # file that onnxruntime would read from the worker's disk (and the checker resolves against the
    # web server's working directory), so it is refused rather than trusted.
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    external = [tensor.name for tensor in _get_all_tensors(model) if uses_external_data(tensor)]
    if external:
        raise SubmissionRefused(
            f"The ONNX model keeps tensor '{external[0]}' in an external file; upload a single "
            "self-contained .onnx file (onnx.save(model) without save_as_external_data).")
    return fmt


def check_features(path: Path, benchmark: str) -> str:
    """Precomputed features: one finite vector per image of the benchmark, all of one length.

    Two layouts, as the engine reads them: one array per image id, or `ids` (n,) with `features` (n, D).
    Extra `query/<id>` entries (cropped queries) are allowed; any other unknown id is refused.
    """
    fmt = sniff_format(path)
    if fmt != NPZ:
        raise SubmissionRefused(f"Precomputed features must be an .npz file; this file is {_describe(fmt)}.")
    expected = engine.benchmark_image_ids(benchmark)
    _check_npz_size(path, len(expected))
    try:
        with np.load(path, allow_pickle=False) as archive:
            if {"ids", "features"} <= set(archive.files):
                ids, matrix = [str(i) for i in archive["ids"]], archive["features"]
                if matrix.ndim != 2 or len(matrix) != len(ids):
                    raise SubmissionRefused(
                        f"'features' must be an (n, D) array with n = len(ids) = {len(ids)}, got {matrix.shape}.")
                vectors = dict(zip(ids, matrix))
            else:
                vectors = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise SubmissionRefused(f"The .npz file could not be read: {_first_line(exc)}") from None
    missing = expected - set(vectors)
    unknown = {key for key in vectors if key not in expected and key.removeprefix("query/") not in expected}
    if missing or unknown:
        raise SubmissionRefused(
            f"The features don't match {benchmark}: {len(vectors)} vectors for its {len(expected)} images "
            f"({len(missing)} image ids missing, {len(unknown)} unknown ids)."
        )
    dims = set()
    for key, vector in vectors.items():
        if vector.ndim != 1 or not np.issubdtype(vector.dtype, np.number):
            raise SubmissionRefused(f"Feature '{key}' must be a 1-D numeric vector, got shape {vector.shape}.")
        if not np.all(np.isfinite(vector)):
            raise SubmissionRefused(f"Feature '{key}' contains NaN or infinite values.")
        dims.add(vector.shape[0])
    if len(dims) > 1:
        raise SubmissionRefused(f"The feature vectors have different lengths: {sorted(dims)[:5]}.")
    return fmt


def _check_npz_size(path: Path, n_images: int) -> None:
    """Refuse an .npz whose arrays would not fit the benchmark, reading only the .npy headers.

    A deflated member can expand ~1000x and a header can declare any shape, so `np.load` alone would
    let a small upload allocate gigabytes in the web process. At most two vectors per image (the
    image and its cropped query) of at most MAX_FEATURE_DIM values, plus the `ids` array, may exist.
    """
    max_members = 2 * n_images + 2
    budget = 2 * n_images * (MAX_FEATURE_DIM * 8 + _MAX_ID_BYTES)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > max_members:
                raise SubmissionRefused(
                    f"The .npz file has {len(members)} arrays; the benchmark has {n_images} images.")
            total = 0
            for member in members:
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(handle)
                if dtype.hasobject:
                    raise SubmissionRefused(f"Array '{member.filename}' holds Python objects; only numbers are "
                                            "accepted (object arrays are pickles and are never loaded).")
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > member.file_size:
                    raise SubmissionRefused(f"Array '{member.filename}' declares {declared} bytes but holds "
                                            f"only {member.file_size}: the file is truncated or malformed.")
                total += member.file_size
            if total > budget:
                raise SubmissionRefused(
                    f"The features take {total / 2**20:.0f} MiB uncompressed, more than {n_images} images "
                    f"of at most {MAX_FEATURE_DIM} values each can need."
                )
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise SubmissionRefused(f"The .npz file could not be read: {_first_line(exc)}") from None


def _describe(fmt: str) -> str:
    return {SAFETENSORS: "safetensors", TORCH_ZIP: "a PyTorch file", ONNX: "an ONNX model", NPZ: "an .npz file"}[fmt]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
