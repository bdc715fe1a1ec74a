"""How images are prepared for a model (`DataConfig`), resolved from the model's own configuration.

A model's authors define its preprocessing; Shelfmark never guesses it. Each family's configuration
is plain JSON, so this module reads it without importing torch (the web process previews it):

- timm: `pretrained_cfg` (input_size, interpolation, crop_pct, crop_mode, mean, std), as
  `timm.data.resolve_data_config` + `create_transform(is_training=False)` apply it: resize the
  shorter side to floor(size / crop_pct), centre-crop `size` ("squash": resize both sides first).
- OpenCLIP: the vision tower's `image_size` and `preprocess_cfg` (mean, std, interpolation,
  resize_mode), as `open_clip.image_transform(is_train=False)`: shorter side to `image_size`, then
  a centre crop ("squash": both sides).
- transformers: `preprocessor_config.json` (size as shortest_edge or height/width, crop_size,
  crop_pct, resample, image_mean, image_std, rescale_factor), as the image processors apply it.

A configuration this pipeline cannot reproduce (non-square crops, padding, "longest" resizing,
other rescale factors) is refused with `PreprocessingUnsupported`, never approximated.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from workers.contract import EngineError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TFLITE_MEAN = (127.0 / 255,) * 3
TFLITE_STD = (128.0 / 255,) * 3
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
RESIZE_MODES = ("shorter", "squash")
# PIL's resampling filters by number, as transformers' configs store them (PILImageResampling).
_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


class PreprocessingUnsupported(EngineError):
    """The model's configuration asks for preprocessing this pipeline cannot reproduce exactly."""


@dataclass(frozen=True)
class DataConfig:
    """How images are prepared for a model: resize, centre-crop, normalise.

    resize_mode "shorter": the shorter side becomes `resize_size` (aspect kept), then the centre
    `input_size` square is cut. "squash": the image becomes `resize_size` x `resize_size` (aspect
    not kept), then the centre `input_size` square is cut (none when they are equal).
    """

    input_size: int = 224          # the crop fed to the network (square)
    resize_size: int = 256         # shorter side (or both sides, "squash") after resizing, before the crop
    mean: tuple[float, float, float] = IMAGENET_MEAN   # on [0, 1] pixels
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"   # bilinear | bicubic | nearest
    resize_mode: str = "shorter"      # shorter | squash
    centre_crop: str = "round"        # the centre's offset: round (torchvision, timm, OpenCLIP) | floor (transformers)

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise PreprocessingUnsupported(f"interpolation {self.interpolation!r} is not one of "
                                           f"{', '.join(INTERPOLATIONS)}")
        if self.centre_crop not in ("round", "floor"):
            raise PreprocessingUnsupported(f"centre crop offset {self.centre_crop!r}: round or floor")
        if self.resize_mode not in RESIZE_MODES:
            raise PreprocessingUnsupported(f"resize mode {self.resize_mode!r} is not one of {', '.join(RESIZE_MODES)}")
        if not 1 <= self.input_size <= self.resize_size:
            raise PreprocessingUnsupported(f"a crop of {self.input_size} out of a resize to {self.resize_size}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _triple(values: Any, what: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in (values if isinstance(values, (list, tuple)) else [values] * 3))
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise PreprocessingUnsupported(f"{what} must have 3 values (RGB), got {len(values)}")
    return values  # type: ignore[return-value]


def _square(size: Any, what: str) -> int:
    """A square size from an int, an (H, W) pair or a (C, H, W) triple."""
    if isinstance(size, int):
        return size
    if isinstance(size, (list, tuple)):
        dims = [int(v) for v in size[-2:]]
        if len(dims) == 2 and dims[0] == dims[1]:
            return dims[0]
    if isinstance(size, dict) and {"height", "width"} <= set(size) and size["height"] == size["width"]:
        return int(size["height"])
    raise PreprocessingUnsupported(f"{what} {size!r} is not square; only square crops are supported")


def from_timm(pretrained_cfg: dict) -> DataConfig:
    """timm's eval transform for a `pretrained_cfg` (timm.data.transforms_factory.transforms_imagenet_eval)."""
    # timm.data.resolve_data_config(use_test_size=False), what resolve_model_data_config(model) gives
    size = _square(pretrained_cfg.get("input_size", (3, 224, 224)), "timm input_size")
    crop_pct = float(pretrained_cfg.get("crop_pct") or 0.875)
    crop_mode = pretrained_cfg.get("crop_mode") or "center"
    if crop_mode not in ("center", "squash"):
        raise PreprocessingUnsupported(f"timm crop_mode {crop_mode!r} (only center and squash are supported)")
    interpolation = pretrained_cfg.get("interpolation") or "bilinear"
    return DataConfig(
        input_size=size, resize_size=math.floor(size / crop_pct),
        mean=_triple(pretrained_cfg.get("mean", IMAGENET_MEAN), "timm mean"),
        std=_triple(pretrained_cfg.get("std", IMAGENET_STD), "timm std"),
        interpolation=interpolation, resize_mode="shorter" if crop_mode == "center" else "squash",
    )


def from_open_clip(image_size: Any, preprocess_cfg: dict | None = None) -> DataConfig:
    """OpenCLIP's eval transform (open_clip.transform.image_transform, is_train=False)."""
    cfg = preprocess_cfg or {}
    size = _square(cfg.get("size", image_size), "OpenCLIP image_size")
    mode = cfg.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise PreprocessingUnsupported(f"OpenCLIP resize_mode {mode!r} (only shortest and squash are supported)")
    if cfg.get("fill_color", 0) not in (0, None):
        raise PreprocessingUnsupported("OpenCLIP padding (fill_color) is not supported")
    return DataConfig(
        input_size=size, resize_size=size,
        mean=_triple(cfg.get("mean", OPENAI_CLIP_MEAN), "OpenCLIP mean"),
        std=_triple(cfg.get("std", OPENAI_CLIP_STD), "OpenCLIP std"),
        interpolation=cfg.get("interpolation", "bicubic"), resize_mode="shorter" if mode == "shortest" else "squash",
    )


def from_transformers(processor: dict) -> DataConfig:
    """What a transformers image processor does with a `preprocessor_config.json` (ViT, BiT/DINOv2,
    CLIP, SigLIP, ConvNeXt, BEiT, DeiT, Swin processors: resize, centre crop, rescale, normalise)."""
    for unsupported in ("do_pad", "do_reduce_labels"):
        if processor.get(unsupported):
            raise PreprocessingUnsupported(f"image processor option {unsupported} is not supported")
    factor = float(processor.get("rescale_factor", 1 / 255)) if processor.get("do_rescale", True) else 1.0
    if not math.isclose(factor, 1 / 255):
        raise PreprocessingUnsupported(f"pixels rescaled by {factor} (only 1/255 is supported)")
    resample = processor.get("resample", 2)
    if resample not in _PIL_RESAMPLE:
        raise PreprocessingUnsupported(f"resample filter {resample!r} (only nearest, bilinear, bicubic)")
    size = processor.get("size", {"height": 224, "width": 224})
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if not processor.get("do_resize", True):
        raise PreprocessingUnsupported("image processors that do not resize are not supported")
    crop = processor.get("crop_size") if processor.get("do_center_crop") else None
    if "shortest_edge" in size:
        shortest = int(size["shortest_edge"])
        crop_pct = processor.get("crop_pct")
        if crop_pct is not None and crop is None:   # ConvNeXt: resize shortest/crop_pct, crop shortest (< 384)
            if shortest < 384:
                resize, input_size, mode = int(shortest / float(crop_pct)), shortest, "shorter"
            else:
                resize = input_size = shortest
                mode = "squash"
        else:
            resize, mode = shortest, "shorter"
            input_size = _square(crop, "crop_size") if crop is not None else None
            if input_size is None:
                raise PreprocessingUnsupported("a shortest-edge resize without a centre crop gives non-square "
                                               "inputs; only square inputs are supported")
    else:
        resize, mode = _square(size, "size"), "squash"
        input_size = _square(crop, "crop_size") if crop is not None else resize
    normalise = processor.get("do_normalize", True)
    return DataConfig(
        input_size=input_size, resize_size=resize,
        mean=_triple(processor.get("image_mean", IMAGENET_MEAN), "image_mean") if normalise else (0.0, 0.0, 0.0),
        std=_triple(processor.get("image_std", IMAGENET_STD), "image_std") if normalise else (1.0, 1.0, 1.0),
        interpolation=_PIL_RESAMPLE[resample], resize_mode=mode, centre_crop="floor",
    )
