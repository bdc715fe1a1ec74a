"""The model families the engine knows, how a model is named, and what each family offers.

    efficientnet_lite0, resnet50, ...   the engine's own registry (torchvision, EfficientNet-Lite)
    timm:ARCH                           any architecture of the installed timm (`timm.list_models()`)
    open_clip:ARCH                      the image tower of an OpenCLIP model config (`open_clip.list_models()`)
    hf-hub:ORG/NAME[@REVISION]          a Hub repository in timm's, OpenCLIP's or transformers' layout

What a family reads features from (`readout`), whether it takes a `layer`, and the preprocessing a
name resolves to are answered here without importing torch, from `model_index.json` (the installed
libraries' architectures and default preprocessing, written by `python -m workers models
--write-index` and checked against the libraries by the tests) and from a Hub repo's JSON configs.
The web process validates names and previews preprocessing through this module.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from workers import hub
from workers.contract import EngineError
from workers.preprocessing import DataConfig, from_open_clip, from_timm, from_transformers

ENGINE = "engine"            # torchvision architectures and the built-in EfficientNet-Lites
TIMM = "timm"
OPEN_CLIP = "open_clip"
TRANSFORMERS = "transformers"
FAMILIES = {
    ENGINE: "the engine's registry: torchvision architectures (weights file) and built-in EfficientNet-Lite",
    TIMM: "timm: any architecture of the installed timm, by timm:NAME with a weights file, or a Hub repo",
    OPEN_CLIP: "OpenCLIP image towers: open_clip:ARCH with a weights file, or a Hub repo in OpenCLIP's format",
    TRANSFORMERS: "Hugging Face transformers vision backbones (ViT, DINOv2, CLIP, SigLIP, ConvNeXt, Swin, BEiT, ...): "
                  "a Hub repo or an uploaded model folder",
}
# What the feature vector is read from, per family; the first is the default (transformers: see
# `default_readout`). ENGINE and TIMM take `layer=` instead (a module's output, pooled).
READOUTS = {
    ENGINE: (),
    TIMM: ("pre_logits",),
    OPEN_CLIP: ("projected", "unprojected"),
    TRANSFORMERS: ("cls", "mean", "cls+mean", "last4_cls", "pooler"),
}
READOUT_HELP = {
    "pre_logits": "the pooled pre-logits features: forward_head(forward_features(x), pre_logits=True)",
    "projected": "the CLIP image embedding (after the projection)",
    "unprojected": "the image tower's pooled features before the projection",
    "cls": "the last layer's CLS token",
    "mean": "the mean of the last layer's patch tokens",
    "cls+mean": "CLS token and mean patch token, concatenated (DINOv2's linear-evaluation features)",
    "last4_cls": "the CLS tokens of the last 4 blocks, concatenated",
    "pooler": "the model's own pooled output (pooler_output: SigLIP's attention pool, ConvNeXt's average)",
}
TAKES_LAYER = {ENGINE: True, TIMM: True, OPEN_CLIP: False, TRANSFORMERS: False}
INDEX_PATH = Path(__file__).with_name("model_index.json")


@dataclass(frozen=True)
class ModelName:
    """A parsed model name: its family (None for a Hub id until its files say), and what it points at."""

    text: str
    family: str | None
    architecture: str | None = None     # ENGINE name, timm or OpenCLIP architecture
    hub_id: hub.HubId | None = None


def parse_model_name(text: str) -> ModelName:
    """What `text` names; raises EngineError for a name no family knows (checked against the index)."""
    text = (text or "").strip()
    index = load_index()
    for prefix, family in (("timm:", TIMM), ("open_clip:", OPEN_CLIP)):
        if text.startswith(prefix):
            architecture = text[len(prefix):]
            if architecture not in index[family]["architectures"]:
                raise EngineError(f"{text!r}: {family} {index[family]['version']} has no architecture "
                                  f"{architecture!r} (python -m workers models {family} lists them)")
            return ModelName(text, family, architecture)
    if text in index[ENGINE]["architectures"]:
        return ModelName(text, ENGINE, text)
    hub_id = hub.parse_hub_id(text)
    if hub_id is not None:
        return ModelName(text, None, hub_id=hub_id)
    engine = ", ".join(sorted(index[ENGINE]["architectures"]))
    raise EngineError(f"unknown model {text!r}: give an engine model ({engine}), timm:ARCH, open_clip:ARCH "
                      "or a Hub id hf-hub:ORG/NAME[@REVISION]")


@lru_cache(maxsize=1)
def load_index() -> dict:
    """The installed libraries' architectures and default preprocessing (model_index.json)."""
    return json.loads(INDEX_PATH.read_text())


def builtin_models() -> list[str]:
    """Engine models whose pretrained weights ship with the engine."""
    return sorted(name for name, entry in load_index()[ENGINE]["architectures"].items() if entry["builtin"])


def engine_architectures() -> list[str]:
    return sorted(load_index()[ENGINE]["architectures"])


def library_architectures(family: str) -> list[str]:
    """`family:ARCH` names of a library family (TIMM or OPEN_CLIP)."""
    return [f"{family}:{name}" for name in sorted(load_index()[family]["architectures"])]


def data_config_of(family: str, architecture: str) -> DataConfig:
    """The default preprocessing of an indexed architecture."""
    index = load_index()[family]
    entry = index["architectures"][architecture]
    if family == TIMM:
        return from_timm(index["profiles"][entry])
    if family == OPEN_CLIP:
        return from_open_clip(entry["image_size"], entry.get("preprocess_cfg"))
    return DataConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry["data_config"].items()})


def folder_data_config(folder: hub.ModelFolder) -> DataConfig:
    """The preprocessing a model folder's own configuration defines (timm, OpenCLIP or transformers);
    a configuration that passed hub's shape checks but still describes none is refused with its name."""
    try:
        return _folder_data_config(folder)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise EngineError(f"{folder.hub_id or 'the model folder'}: its preprocessing configuration can't be read "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None


def _folder_data_config(folder: hub.ModelFolder) -> DataConfig:
    if folder.family == TIMM:
        config = folder.configs["config.json"]
        return from_timm(config.get("pretrained_cfg", config))
    if folder.family == OPEN_CLIP:
        config = folder.configs["open_clip_config.json"]
        vision = config.get("model_cfg", {}).get("vision_cfg", {})
        return from_open_clip(vision.get("image_size", 224), config.get("preprocess_cfg"))
    if "preprocessor_config.json" not in folder.configs:
        raise EngineError(f"{folder.hub_id or 'the model folder'} has no preprocessor_config.json: its "
                          "preprocessing is unknown, and Shelfmark does not guess it")
    return from_transformers(folder.configs["preprocessor_config.json"])


def default_readout(family: str, config: dict | None = None) -> str | None:
    """The readout used when none is asked for. transformers: "cls" for models with a CLS token,
    "pooler" for those without (SigLIP, ConvNeXt, Swin, ResNet), from the config's model_type."""
    if family != TRANSFORMERS:
        return READOUTS[family][0] if READOUTS[family] else None
    model_type = (config or {}).get("model_type", "")
    if model_type in ("siglip", "siglip2"):
        return "pooler"
    vision = (config or {}).get("vision_config") or {}
    model_type = vision.get("model_type", model_type)
    return "pooler" if model_type in NO_CLS_MODEL_TYPES else "cls"


# transformers model types whose outputs have no CLS token: their pooled output is the readout.
NO_CLS_MODEL_TYPES = frozenset({"siglip_vision_model", "siglip2_vision_model", "convnext", "convnextv2", "swin",
                                "swinv2", "resnet", "regnet", "efficientnet", "mobilenet_v2", "levit", "poolformer",
                                "bit", "dinat", "nat", "focalnet", "van", "mobilevit", "hiera"})


def check_readout(family: str, readout: str | None, layer: str | None) -> None:
    """Refuse a readout or a layer the family does not offer, naming what it does."""
    if readout and readout not in READOUTS[family]:
        offered = ", ".join(READOUTS[family]) or "none (use layer=)"
        raise EngineError(f"{family} models offer the readouts {offered}; not {readout!r}")
    if layer and not TAKES_LAYER[family]:
        raise EngineError(f"{family} models take a readout ({', '.join(READOUTS[family])}), not a layer")


def preview(text: str, *, cache_dir: Path | None = None, token: str | None = None) -> dict:
    """What a model name resolves to, without torch and without weights: family, preprocessing,
    readouts, whether it takes a layer, and for a Hub id its commit (its configs are fetched)."""
    name = parse_model_name(text)
    about: dict = {"name": name.text}
    if name.hub_id is not None:
        folder = hub.fetch(name.hub_id, cache_dir=cache_dir, token=token, weights=False)
        family, data_config = folder.family, folder_data_config(folder)
        readout = default_readout(family, folder.configs.get("config.json"))
        about.update(repo=name.hub_id.repo, revision=name.hub_id.revision, commit=folder.commit)
    else:
        family, data_config = name.family, data_config_of(name.family, name.architecture)
        readout = default_readout(family)
    about.update(family=family, family_title=FAMILIES[family], preprocessing=data_config.to_dict(),
                 readouts=list(READOUTS[family]), default_readout=readout, takes_layer=TAKES_LAYER[family])
    return about
