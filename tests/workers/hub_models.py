"""Stand-ins for Hub repositories, built offline: small random-init models of each family, saved by the
libraries themselves in their Hub layouts, and put into a local Hugging Face cache as the Hub client
would have left them (models--ORG--NAME/refs/main holding a commit hash, snapshots/<hash>/ the files).

Also the libraries' own reference: each family's preprocessing and forward pass, as its users run them.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

ORG = "shelfmark-test"


def put_in_cache(cache: Path, repo: str, folder: Path, revision: str = "main") -> str:
    """Copy `folder`'s files into `cache` as snapshot `<commit>` of `repo`, with `refs/<revision>`."""
    digest = hashlib.sha1()
    for path in sorted(folder.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    commit = digest.hexdigest()
    root = Path(cache) / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        shutil.copyfile(path, snapshot / path.name)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / revision).write_text(commit)
    return commit


def _saved(save) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="hub-model-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save(folder)
    return folder


def timm_folder(architecture: str = "test_vit", seed: int = 0) -> Path:
    """timm's own Hub layout (timm.models.save_for_hf): config.json with architecture and pretrained_cfg."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False)
    return _saved(lambda folder: save_for_hf(model, str(folder), safe_serialization=True))


TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1},
}


def open_clip_folder(seed: int = 0) -> Path:
    """OpenCLIP's Hub layout: open_clip_config.json (model_cfg, preprocess_cfg) + open_clip_model.safetensors."""
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = CLIP(**TINY_OPEN_CLIP)

    def save(folder: Path):
        (folder / "open_clip_config.json").write_text(json.dumps({
            "model_cfg": TINY_OPEN_CLIP,
            "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
                               "resize_mode": "shortest"}}))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")

    return _saved(save)


def transformers_folder(kind: str, seed: int = 0) -> Path:
    """A transformers model folder (save_pretrained): config.json, model.safetensors, preprocessor_config.json."""
    import transformers as tf

    torch.manual_seed(seed)
    small = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 64}
    if kind == "vit":
        model = tf.ViTModel(tf.ViTConfig(image_size=32, patch_size=8, **small), add_pooling_layer=False)
        processor = tf.ViTImageProcessor(size={"height": 32, "width": 32})
    elif kind == "dinov2":
        model = tf.Dinov2Model(tf.Dinov2Config(image_size=32, patch_size=8, **small))
        processor = tf.BitImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32},
                                         resample=3, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                                         do_convert_rgb=True)
    elif kind == "clip":
        model = tf.CLIPVisionModel(tf.CLIPVisionConfig(image_size=32, patch_size=8, **small))
        processor = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    elif kind == "siglip":
        model = tf.SiglipVisionModel(tf.SiglipVisionConfig(image_size=32, patch_size=8, **small))
        processor = tf.SiglipImageProcessor(size={"height": 32, "width": 32})
    elif kind == "convnext":
        model = tf.ConvNextModel(tf.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]))
        processor = tf.ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875)
    else:
        raise ValueError(kind)

    def save(folder: Path):
        model.save_pretrained(folder, safe_serialization=True)
        processor.save_pretrained(folder)

    return _saved(save)


# ---- the libraries' own preprocessing and forward pass ------------------------------------------

def timm_reference(snapshot: Path, photos: list[np.ndarray]) -> np.ndarray:
    import timm
    from PIL import Image

    model = timm.create_model(f"local-dir:{snapshot}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    with torch.inference_mode():
        batch = torch.stack([transform(Image.fromarray(photo)) for photo in photos])
        return model.forward_head(model.forward_features(batch), pre_logits=True).numpy()


def open_clip_reference(snapshot: Path, photos: list[np.ndarray]) -> np.ndarray:
    import open_clip
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{snapshot}")
    with torch.inference_mode():
        batch = torch.stack([preprocess(Image.fromarray(photo)) for photo in photos])
        return model.eval().encode_image(batch).numpy()


def transformers_reference(snapshot: Path, photos: list[np.ndarray], readout: str) -> np.ndarray:
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel

    processor = AutoImageProcessor.from_pretrained(snapshot)
    model = AutoModel.from_pretrained(snapshot).eval()
    inputs = processor(images=[Image.fromarray(photo) for photo in photos], return_tensors="pt")
    with torch.inference_mode():
        out = model(**inputs, output_hidden_states=True)
    if readout == "pooler":
        return out.pooler_output.flatten(1).numpy()
    tokens = out.last_hidden_state
    return {
        "cls": lambda: tokens[:, 0],
        "mean": lambda: tokens[:, 1:].mean(dim=1),
        "cls+mean": lambda: torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=1),
        "last4_cls": lambda: torch.cat([h[:, 0] for h in out.hidden_states[-4:]], dim=1),
    }[readout]().numpy()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
