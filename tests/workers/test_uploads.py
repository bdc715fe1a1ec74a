"""The engine's one entry for uploaded files: formats sniffed from bytes, safe loaders, typed refusals
in Shelfmark's words, and the evaluation reading a file exactly as the upload check did."""
from __future__ import annotations

import hashlib
import pickle
import zipfile

import numpy as np
import pytest
import torch

from workers import safeload
from workers.contract import (
    EngineError,
    EvaluationSpec,
    FeaturesMismatch,
    MalformedUpload,
    UnrecognisedUpload,
    UnsafeUpload,
    UploadRefused,
    WeightsMismatch,
)
from workers.datasets.base import DatasetError
from workers.evaluate import run_evaluation
from workers.uploads import FEATURES, ONNX, WEIGHTS, inspect_upload


class _RunsCode:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def _resnet18_state() -> dict:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18().state_dict()


def _tiny_onnx(path, **tensor_location):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["f"])],
        "gap", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_formats_are_sniffed_from_the_bytes_not_the_name(tmp_path):
    from safetensors.torch import save_file

    state = {"w": torch.zeros(2)}
    save_file(state, tmp_path / "weights.npz")
    torch.save(state, tmp_path / "weights.safetensors")
    torch.save(state, tmp_path / "legacy.onnx", _use_new_zipfile_serialization=False)
    with open(tmp_path / "features.pt", "wb") as handle:   # np.savez would add ".npz" to a name
        np.savez(handle, a=np.ones(2))
    _tiny_onnx(tmp_path / "graph.bin")
    found = {name: safeload.sniff_format(tmp_path / name)
             for name in ("weights.npz", "weights.safetensors", "legacy.onnx", "features.pt", "graph.bin")}
    assert found == {"weights.npz": "safetensors", "weights.safetensors": "torch_zip", "legacy.onnx": "torch_legacy",
                     "features.pt": "npz", "graph.bin": "onnx"}


def test_a_torch_pickle_that_would_run_code_is_refused_in_shelfmarks_words(tmp_path):
    # was: the submitter read PyTorch's advice to load the file with weights_only=False, ANSI codes included
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _RunsCode(marker)}, path)

    with pytest.raises(UnsafeUpload) as refused:
        inspect_upload(WEIGHTS, path, architecture="resnet18")

    message = str(refused.value)
    assert "could run code" in message and "io.open" in message   # names what it found
    for advice in ("weights_only", "can still be loaded", "\x1b["):
        assert advice not in message
    assert not marker.exists()


def test_a_plain_pickle_is_refused_before_any_loader_sees_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pth"
    path.write_bytes(pickle.dumps({"w": _RunsCode(marker)}))
    with pytest.raises(UnsafeUpload, match="Plain pickle files are not accepted"):
        safeload.load_state_dict(path)
    assert not marker.exists()


def test_a_legacy_torch_file_of_tensors_loads_like_the_built_in_weights(tmp_path):
    state = _resnet18_state()
    path = tmp_path / "old.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert inspect_upload(WEIGHTS, path, architecture="resnet18").format == "torch_legacy"
    loaded = safeload.load_state_dict(path)
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"])


def test_weights_that_do_not_fit_carry_the_names_as_fields(tmp_path):
    # was: the web stripped a prefix of the engine's message to build its own (an interface made of prose)
    state = _resnet18_state()
    state.pop("layer1.0.conv1.weight")
    state["extra.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    path = tmp_path / "bad.pth"
    torch.save(state, path)

    with pytest.raises(WeightsMismatch) as refused:
        inspect_upload(WEIGHTS, path, architecture="resnet18", name="bad.pth")

    mismatch = refused.value
    assert mismatch.architecture == "resnet18"
    assert mismatch.missing == ["layer1.0.conv1.weight"] and mismatch.unexpected == ["extra.weight"]
    assert mismatch.mismatched == ["conv1.weight (8, 3, 7, 7) vs (64, 3, 7, 7)"]
    assert str(mismatch).startswith("The weights bad.pth don't fit resnet18: missing 1: layer1.0.conv1.weight")


def test_the_inspection_returns_the_format_suffix_and_hash(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "upload"
    save_file(_resnet18_state(), path)
    inspection = inspect_upload(WEIGHTS, path, architecture="resnet18")
    assert (inspection.format, inspection.suffix) == ("safetensors", ".safetensors")
    assert inspection.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert inspect_upload(ONNX, _tiny_onnx(tmp_path / "g.onnx")).suffix == ".onnx"


def test_an_onnx_external_tensor_is_refused_alike_whether_or_not_its_file_exists(tmp_path, monkeypatch):
    # was: the checker ran first and said something else when the named file existed: a probe of the disk
    from onnx import TensorProto, helper

    monkeypatch.chdir(tmp_path)
    (tmp_path / "exists.bin").write_bytes(b"\0" * 16)

    def external(location):
        tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
        for key, value in (("location", location), ("offset", "0"), ("length", "16")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        graph = helper.make_graph([helper.make_node("Identity", ["w"], ["f"])], "g", [],
                                  [helper.make_tensor_value_info("f", TensorProto.FLOAT, [4])], initializer=[tensor])
        path = tmp_path / f"{location}.onnx"
        path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
        return path

    answers = []
    for location in ("exists.bin", "absent.bin"):
        with pytest.raises(UnsafeUpload) as refused:
            inspect_upload(ONNX, external(location))
        answers.append(str(refused.value))
    assert answers[0] == answers[1] == ("The ONNX model keeps tensor 'w' in an external file; upload a single "
                                        "self-contained .onnx file (onnx.save(model) without save_as_external_data).")


def test_features_are_checked_against_the_benchmark_and_every_refusal_is_typed(tmp_path):
    from workers.benchmarks import load_digits_benchmark

    data = load_digits_benchmark()
    ids = [r.id for split in data.splits.values() for r in split]
    good = tmp_path / "good.npz"
    np.savez(good, ids=np.array(ids), features=np.ones((len(ids), 4), dtype=np.float32))
    assert inspect_upload(FEATURES, good, benchmark="digits").format == "npz"

    short = tmp_path / "short.npz"
    np.savez(short, **{image_id: np.ones(4) for image_id in ids[:-1]})
    with pytest.raises(FeaturesMismatch, match="1796 vectors for its 1797 images"):
        inspect_upload(FEATURES, short, benchmark="digits")
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([_RunsCode(tmp_path / "pwned")], dtype=object))
    with pytest.raises(UnsafeUpload, match="holds Python objects"):
        inspect_upload(FEATURES, objects, benchmark="digits")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(good.read_bytes()[:200])
    with pytest.raises(MalformedUpload):
        inspect_upload(FEATURES, broken, benchmark="digits")
    with pytest.raises(UnrecognisedUpload, match="must be an .npz file"):
        inspect_upload(FEATURES, _tiny_onnx(tmp_path / "g.onnx"), benchmark="digits")
    with pytest.raises(DatasetError, match="Benchmark 'mit67' cannot be read here: mit67 needs --data ROOT"):
        inspect_upload(FEATURES, good, benchmark="mit67")
    assert not (tmp_path / "pwned").exists()


def test_every_refusal_is_an_engine_error_the_cli_and_the_site_already_handle():
    for refusal in (UnsafeUpload, UnrecognisedUpload, MalformedUpload, FeaturesMismatch, WeightsMismatch):
        assert issubclass(refusal, UploadRefused) and issubclass(refusal, EngineError)


def test_the_evaluation_reads_features_through_the_same_bounded_reader(tmp_path, monkeypatch):
    # The header bound the upload check applies holds in the worker too: a bomb never reaches np.load there.
    bomb = tmp_path / "bomb.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (2**21,)
    buffer = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.npy", buffer.getvalue() + b"\0" * 2**24)
    monkeypatch.setattr(safeload, "MAX_FEATURE_DIM", 64)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load ran"))
    with pytest.raises(UploadRefused, match="16 MiB uncompressed"):
        run_evaluation(EvaluationSpec(benchmark="digits", features=bomb))
