"""Opening files that users give the engine (weights, ONNX graphs, precomputed features) safely.

The model registry, the evaluation and the upload check (`workers.uploads.inspect_upload`) read
such files only through here, so what is accepted, how it is opened and what a refusal says are
written once. The order is the rule:

1. the format is sniffed from the first bytes, never from the file's name (`sniff_format`);
2. the file is opened only by a loader that cannot run code: safetensors, `torch.load(weights_only=
   True)`, protobuf without external data for ONNX, `numpy.load(allow_pickle=False)` once the .npy
   headers were bounded (a small deflated member can declare gigabytes);
3. the content is checked against what it is for: the architecture (names and shapes, in
   `workers.models`), or the benchmark (one finite vector of one length per image).

Every refusal is an `UploadRefused` subclass (workers/contract.py) whose message is one sentence
for the submitter; callers branch on the class, never on the text.
"""
from __future__ import annotations

import json
import pickle
import pickletools
import re
import struct
import zipfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.contract import (
    FeaturesMismatch,
    MalformedUpload,
    UnrecognisedUpload,
    UnsafeUpload,
    UploadRefused,
    UploadTooLarge,
)

SAFETENSORS = "safetensors"
TORCH_ZIP = "torch_zip"           # torch.save since PyTorch 1.6: a zip with data.pkl and tensor files
TORCH_LEGACY = "torch_legacy"     # torch.save's older format: a pickle that starts with torch's magic number
ONNX = "onnx"
NPZ = "npz"
WEIGHT_FORMATS = (SAFETENSORS, TORCH_ZIP, TORCH_LEGACY)
SUFFIXES = {SAFETENSORS: ".safetensors", TORCH_ZIP: ".pt", TORCH_LEGACY: ".pth", ONNX: ".onnx", NPZ: ".npz"}
_DESCRIPTIONS = {SAFETENSORS: "safetensors", TORCH_ZIP: "a PyTorch file", TORCH_LEGACY: "a PyTorch file",
                 ONNX: "an ONNX model", NPZ: "an .npz file"}

_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
# torch.save's legacy format pickles this number first (torch/serialization.py: MAGIC_NUMBER), protocol 2.
_TORCH_LEGACY_HEAD = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_PICKLE_SCAN_LIMIT = 64 * 1024 * 1024
MAX_FEATURE_DIM = 16384     # values per precomputed feature vector (the 2014 features had 4096)
_MAX_ID_BYTES = 1024        # room per image in the `ids` array of the (ids, features) layout


def describe_format(fmt: str) -> str:
    return _DESCRIPTIONS[fmt]


def sniff_format(path: Path) -> str:
    """The file's format from its first bytes: one of SAFETENSORS, TORCH_ZIP, TORCH_LEGACY, ONNX, NPZ."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(16)
    if len(head) < 8:
        raise UnrecognisedUpload("The file is empty or too short to be a model, weights or features file.")
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as exc:
            raise MalformedUpload(f"The zip archive is damaged: {exc}.") from None
        if names and all(name.endswith(".npy") for name in names):
            return NPZ
        if any(name.endswith("data.pkl") for name in names):
            return TORCH_ZIP
        raise UnrecognisedUpload("The zip archive is neither a PyTorch state_dict (torch.save) nor an .npz file.")
    if head[:14] == _TORCH_LEGACY_HEAD:
        return TORCH_LEGACY
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise UnsafeUpload(
            "Plain pickle files are not accepted (they can run code when loaded), so this one was refused: "
            "save the weights with torch.save(model.state_dict()) (zip format) or as safetensors."
        )
    header_length = struct.unpack("<Q", head[:8])[0]
    if 2 <= header_length <= min(_SAFETENSORS_MAX_HEADER, size - 8) and head[8:9] == b"{":
        return SAFETENSORS
    if head[:1] == b"\x08":  # ModelProto field 1 (ir_version), a varint: how every ONNX file begins
        return ONNX
    raise UnrecognisedUpload(
        "Unrecognised file format: expected safetensors, a PyTorch state_dict (zip), ONNX or .npz."
    )


# ---- weights ------------------------------------------------------------------------------------

def load_state_dict(path: Path) -> dict:
    """Tensors by name from a weights file, loaded without running any code from it.

    Unwraps the usual checkpoint wrappers ({"state_dict": ...}, {"model": ...}) and DataParallel's
    "module." prefix. Raises `UploadRefused` (a subclass) with a message for the submitter.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise UploadRefused(f"weights file not found: {path.name}")
    fmt = sniff_format(path)
    if fmt == SAFETENSORS:
        state = _load_safetensors(path)
    elif fmt in (TORCH_ZIP, TORCH_LEGACY):
        state = _load_torch(path, fmt)
    else:
        raise UnrecognisedUpload(
            f"Weights must be a safetensors file or a PyTorch state_dict; this file is {describe_format(fmt)}.")
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()):
        raise MalformedUpload("The weights file is not a state_dict (a mapping of tensor names to tensors).")
    if all(key.startswith("module.") for key in state):   # saved from DataParallel
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (names, dtypes, shapes, offsets), without reading tensors."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            header_length = struct.unpack("<Q", handle.read(8))[0]
            if not 2 <= header_length <= _SAFETENSORS_MAX_HEADER:
                raise ValueError(f"header length {header_length}")
            header = json.loads(handle.read(header_length))
    except (ValueError, OSError, struct.error) as exc:
        raise MalformedUpload(f"The safetensors file is malformed: {_first_line(exc)}") from None
    if not isinstance(header, dict):
        raise MalformedUpload("The safetensors file is malformed: its header is not a JSON object")
    return header


def _load_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    safetensors_header(path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, ValueError, OSError, struct.error) as exc:
        raise MalformedUpload(f"The safetensors file is malformed: {_first_line(exc)}") from None


def _load_torch(path: Path, fmt: str) -> dict:
    import torch

    if fmt == TORCH_ZIP:
        _check_torch_zip(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # PyTorch's own message advises loading with weights_only=False, exactly what must not happen
        # to an untrusted file: the submitter is told what was found instead.
        found = [name for name in _pickle_globals(path, fmt) if not _is_tensor_global(name)]
        example = f" (it refers to {found[0]})" if found else ""
        raise UnsafeUpload(
            f"The weights file contains Python objects other than tensors{example} and was refused: it could "
            "run code when loaded. Save only the tensors: torch.save(model.state_dict()) or safetensors."
        ) from None
    except (RuntimeError, ValueError, EOFError, OSError, AttributeError, zipfile.BadZipFile) as exc:
        raise MalformedUpload(f"The PyTorch file could not be read: {_first_line(exc)}") from None


def _check_torch_zip(path: Path) -> None:
    """torch.save stores its members uncompressed; a deflated member could expand far past the upload's size."""
    try:
        with zipfile.ZipFile(path) as archive:
            packed = [m.filename for m in archive.infolist()
                      if m.compress_type != zipfile.ZIP_STORED or m.flag_bits & 1]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise MalformedUpload(f"The PyTorch file could not be read: {_first_line(exc)}") from None
    if packed:
        raise MalformedUpload(
            f"The PyTorch file holds a compressed or encrypted member ({packed[0]}); torch.save never writes one. "
            "Upload the file torch.save(model.state_dict(), path) wrote, or safetensors.")


def _pickle_globals(path: Path, fmt: str) -> list[str]:
    """The "module.name" globals a pickle imports, read with pickletools (which parses, never runs)."""
    try:
        if fmt == TORCH_ZIP:
            with zipfile.ZipFile(path) as archive:
                member = next(name for name in archive.namelist() if name.endswith("data.pkl"))
                with archive.open(member) as handle:
                    data = handle.read(_PICKLE_SCAN_LIMIT)
        else:
            with open(path, "rb") as handle:
                data = handle.read(_PICKLE_SCAN_LIMIT)
                data = data[len(_TORCH_LEGACY_HEAD) + 1:]   # the magic number pickle, then the protocol's
        names, strings = [], []
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                names.append(str(argument).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(argument, str):
                strings.append(argument)
        return names
    except Exception:   # a best-effort example for the message: a malformed pickle names nothing
        return []


def _is_tensor_global(name: str) -> bool:
    return name.startswith(("torch.", "collections.OrderedDict", "_codecs.encode"))


# ---- ONNX ---------------------------------------------------------------------------------------

def check_onnx(path: Path) -> str:
    """A self-contained, valid ONNX graph with an input and an output; returns ONNX."""
    path = Path(path)
    if not path.is_file():
        raise UploadRefused(f"ONNX file not found: {path.name}")
    try:
        fmt = sniff_format(path)
    except UploadRefused as exc:
        raise UnrecognisedUpload(f"The file is not a loadable ONNX model: {exc}") from None
    if fmt != ONNX:
        raise UnrecognisedUpload(f"Expected an ONNX model; this file is {describe_format(fmt)}.")
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise MalformedUpload(f"The ONNX model is invalid: {_first_line(exc)}") from None
    # One file is uploaded, so every tensor must be inside it. A tensor stored "externally" names a
    # file that onnxruntime would read from the worker's disk (and the checker resolves against the
    # working directory, so the message would tell whether that file exists): refused before any check.
    external = [tensor.name or "(unnamed)" for tensor in _onnx_tensors(model)
                if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data]
    if external:
        raise UnsafeUpload(
            f"The ONNX model keeps tensor '{external[0]}' in an external file; upload a single "
            "self-contained .onnx file (onnx.save(model) without save_as_external_data).")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise MalformedUpload(f"The ONNX model is invalid: {_first_line(exc)}") from None
    if not model.graph.input or not model.graph.output:
        raise MalformedUpload("The ONNX model has no input or no output.")
    return fmt


def _onnx_tensors(message):
    """Every TensorProto anywhere in an ONNX message: initializers, sparse initializers' values and
    indices, node attributes (dense and sparse), subgraphs and functions. onnx's own helper skips the
    sparse ones, so the whole message tree is walked instead."""
    import onnx

    stack = [message]
    while stack:
        current = stack.pop()
        if isinstance(current, onnx.TensorProto):
            yield current
            continue
        for field, value in current.ListFields():
            if field.type != field.TYPE_MESSAGE:
                continue
            if field.is_repeated:
                stack.extend(value)
            else:
                stack.append(value)


# ---- precomputed features -----------------------------------------------------------------------

@dataclass
class FeatureTable:
    """Precomputed features by key: an image id, or `query/<image id>` for a query cropped to its box."""

    vectors: dict[str, np.ndarray]
    dim: int

    def __len__(self) -> int:
        return len(self.vectors)


def read_features(path: Path, *, max_images: int) -> FeatureTable:
    """Read an .npz of features for a benchmark of `max_images` images, refusing what can't be one.

    Two layouts, as the evaluation reads them: one array per image id (`np.savez(f, **{id: vector})`),
    or `ids` (n,) with `features` (n, D). Every vector is 1-D, finite and of one length. At most two
    vectors per image (the image and its cropped query) are admitted, checked from the headers first.
    """
    path = Path(path)
    if not path.is_file():
        raise UploadRefused(f"features file not found: {path.name}")
    fmt = sniff_format(path)
    if fmt != NPZ:
        raise UnrecognisedUpload(f"Precomputed features must be an .npz file; this file is {describe_format(fmt)}.")
    _check_npz_size(path, max_images)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if {"ids", "features"} <= set(archive.files):
                ids, matrix = [_feature_id(i) for i in archive["ids"]], archive["features"]
                if matrix.ndim != 2 or len(matrix) != len(ids):
                    raise FeaturesMismatch(
                        f"'features' must be an (n, D) array with n = len(ids) = {len(ids)}, got {matrix.shape}.")
                vectors = dict(zip(ids, matrix))
            else:
                vectors = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise MalformedUpload(f"The .npz file could not be read: {_first_line(exc)}") from None
    if not vectors:
        raise FeaturesMismatch("The features file contains no features.")
    dims = set()
    for key, vector in vectors.items():
        if vector.ndim != 1 or vector.dtype.kind not in "biuf":
            raise FeaturesMismatch(f"Feature '{key}' must be a 1-D vector of real numbers, got shape "
                                   f"{vector.shape} of {vector.dtype}.")
        if vector.shape[0] > MAX_FEATURE_DIM or vector.shape[0] == 0:
            raise FeaturesMismatch(f"Feature '{key}' has {vector.shape[0]} values; a feature has 1 to "
                                   f"{MAX_FEATURE_DIM}.")
        if not np.all(np.isfinite(vector)):
            raise FeaturesMismatch(
                f"Feature '{key}' contains NaN or infinite values (features that are not finite can't be scored).")
        dims.add(vector.shape[0])
    if len(dims) > 1:
        raise FeaturesMismatch(f"The feature vectors have different lengths: {sorted(dims)[:5]}; every feature "
                               "must be one vector of the same length.")
    return FeatureTable(vectors=vectors, dim=dims.pop())


def _feature_id(value) -> str:
    """An image id from the `ids` array: np.str_ or bytes (np.savez of a list of bytes), never repr'd."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise FeaturesMismatch("An entry of 'ids' is not UTF-8 text.") from None
    if not isinstance(value, str):
        raise FeaturesMismatch(f"'ids' must hold strings (image ids), not {type(value).__name__}.")
    return str(value)


def check_features_cover(table: FeatureTable, expected_ids: Collection[str], *, benchmark: str) -> None:
    """Exactly one vector per image of the benchmark; `query/<id>` entries (cropped queries) allowed."""
    expected = set(expected_ids)
    missing = expected - set(table.vectors)
    unknown = {key for key in table.vectors if key not in expected and key.removeprefix("query/") not in expected}
    if missing or unknown:
        raise FeaturesMismatch(
            f"The features don't match {benchmark}: {len(table)} vectors for its {len(expected)} images "
            f"({len(missing)} image ids missing, {len(unknown)} unknown ids)."
        )


def _check_npz_size(path: Path, n_images: int) -> None:
    """Refuse an .npz whose arrays would not fit the benchmark, reading only the .npy headers.

    A deflated member can expand ~1000x and a header can declare any shape, so `np.load` alone would
    let a small upload allocate gigabytes. At most two vectors per image (the image and its cropped
    query) of at most MAX_FEATURE_DIM values, plus the `ids` array, may exist.
    """
    max_members = 2 * n_images + 2
    budget = 2 * n_images * (MAX_FEATURE_DIM * 8 + _MAX_ID_BYTES)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > max_members:
                raise UploadTooLarge(
                    f"The .npz file has {len(members)} arrays; the benchmark has {n_images} images.")
            total = 0
            for member in members:
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(handle)
                if dtype.hasobject:
                    raise UnsafeUpload(f"Array '{member.filename}' holds Python objects; only numbers are "
                                       "accepted (object arrays are pickles and are never loaded).")
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > member.file_size:
                    raise MalformedUpload(f"Array '{member.filename}' declares {declared} bytes but holds "
                                          f"only {member.file_size}: the file is truncated or malformed.")
                total += member.file_size
            if total > budget:
                raise UploadTooLarge(
                    f"The features take {total / 2**20:.0f} MiB uncompressed, more than {n_images} images "
                    f"of at most {MAX_FEATURE_DIM} values each can need."
                )
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise MalformedUpload(f"The .npz file could not be read: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# ---- model folders (a zip of a Hub layout) ------------------------------------------------------

MODEL_FOLDER_FILES = ("config.json", "preprocessor_config.json", "open_clip_config.json", "model.safetensors",
                      "open_clip_model.safetensors", "model.safetensors.index.json")
_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
_LEFT_OUT = re.compile(r"^(README(\.md)?|\.gitattributes|LICEN[SC]E(\.\w+)?)$", re.IGNORECASE)
MAX_FOLDER_MEMBERS = 64


def extract_model_folder(path: Path, target: Path, *, max_bytes: int) -> list[str]:
    """Extract a zip of a model folder (timm, OpenCLIP or transformers layout) into `target`.

    Only the layouts' configuration and safetensors files are written (README, LICENSE and
    .gitattributes are left out); anything else (code, pickles, links, absolute or escaping paths)
    refuses the whole archive. Files may sit in one top-level folder. At most `max_bytes` are
    written, counted as they are written (a zip's declared sizes are not trusted). Returns the names.
    """
    import shutil
    import stat

    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise MalformedUpload(f"The model folder is not a readable zip archive: {exc}.") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if not members or len(members) > MAX_FOLDER_MEMBERS:
            raise UploadTooLarge(f"The zip holds {len(members)} files; a model folder holds 1 to {MAX_FOLDER_MEMBERS}.")
        tops = {m.filename.split("/")[0] for m in members}
        strip = tops.pop() + "/" if len(tops) == 1 and all("/" in m.filename for m in members) else ""
        chosen = {}
        for member in members:
            name = member.filename[len(strip):]
            if member.flag_bits & 1:
                raise MalformedUpload(f"The zip holds an encrypted file ({member.filename}); upload it unencrypted.")
            if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise MalformedUpload(f"The zip compresses {member.filename} with a method other than deflate; "
                                      "make it with `zip` or Python's zipfile (stored or deflated).")
            if stat.S_ISLNK(member.external_attr >> 16):
                raise UnsafeUpload(f"The zip holds a link ({member.filename}); links are not accepted.")
            if "/" in name or "\\" in name or name.startswith(".") and not _LEFT_OUT.match(name) or ".." in name:
                raise UnsafeUpload(f"The zip holds {member.filename!r}: a model folder's files sit at its top level.")
            if _LEFT_OUT.match(name):
                continue
            if name not in MODEL_FOLDER_FILES and not _SHARD.match(name):
                raise UnsafeUpload(
                    f"The zip holds {name!r}, which is not part of a model folder (accepted: "
                    f"{', '.join(MODEL_FOLDER_FILES)}, model-NNNNN-of-NNNNN.safetensors); code and pickles never are.")
            chosen[name] = member
        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        written = 0
        try:
            for name, member in chosen.items():
                with archive.open(member) as source, open(target / name, "wb") as out:
                    for block in iter(lambda: source.read(1 << 20), b""):
                        written += len(block)
                        if written > max_bytes:
                            raise UploadTooLarge(f"The model folder unpacks to more than {max_bytes / 2**30:.1f} GiB.")
                        out.write(block)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise MalformedUpload(f"The zip archive could not be read: {_first_line(exc)}") from None
        except UploadRefused:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return sorted(chosen)


# ---- ground-truth pickles (Revisited Oxford / Paris) --------------------------------------------

# What a ground-truth pickle may rebuild: numpy arrays and scalars (and the bytes protocol 2 pickles
# encode their data with). Anything else, a function above all, is refused before it is looked up.
_GROUND_TRUTH_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})
MAX_GROUND_TRUTH_BYTES = 256 * 1024 * 1024


class _GroundTruthUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _GROUND_TRUTH_GLOBALS:
            raise UnsafeUpload(f"the ground-truth pickle refers to {module}.{name}: only containers, numbers, "
                               "strings and numpy arrays of numbers are read (nothing in it may run)")
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        return super().find_class(module, name)


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """Protocol 2 pickles rebuild numpy's bytes as _codecs.encode(text, "latin1"); no other codec is
    looked up (some codecs are slow or allocate much, and none is needed)."""
    import codecs

    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise UnsafeUpload("the ground-truth pickle calls _codecs.encode other than as numpy's arrays do")
    return codecs.encode(text, "latin1")


def _plain(value, path: str = "gnd") -> None:
    """Refuse anything but containers, numbers, strings and numeric numpy arrays, anywhere in `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise UnsafeUpload(f"{path}: a key of type {type(key).__name__}")
            _plain(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _plain(item, f"{path}[{index}]")
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise UnsafeUpload(f"{path}: an array of {value.dtype} (only numbers are read)")
    elif not isinstance(value, (str, bytes, int, float, bool, np.number, type(None))):
        raise UnsafeUpload(f"{path}: a {type(value).__name__} (only containers, numbers and strings are read)")


def load_ground_truth_pickle(path: Path) -> dict:
    """A ground-truth pickle (revisitop's gnd_roxford5k.pkl) read with a restricted unpickler."""
    import io
    path = Path(path)
    if path.stat().st_size > MAX_GROUND_TRUTH_BYTES:
        raise UploadTooLarge(f"{path.name} is larger than {MAX_GROUND_TRUTH_BYTES // 2**20} MiB")
    try:
        loaded = _GroundTruthUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except UnsafeUpload:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, LookupError,
            MemoryError, OverflowError, RecursionError, UnicodeError, struct.error) as exc:
        raise MalformedUpload(f"{path.name} is not a readable ground-truth pickle: {_first_line(exc)}") from None
    _plain(loaded)
    if not isinstance(loaded, dict):
        raise MalformedUpload(f"{path.name} holds a {type(loaded).__name__}, not a dict")
    return loaded
