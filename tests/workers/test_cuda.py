"""The CUDA path (bf16 autocast, channels_last, pinned memory, nvjpeg decoding): runs only where a
GPU is present.

CI has no GPU, so these skip there; they are run on a lent GPU machine.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from workers.contract import EvaluationSpec
from workers.datasets.base import ImageRecord
from workers.evaluate import run_evaluation
from workers.extract import AUTO_DEVICE_DECODE, extract_features
from workers.models import create_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _photos() -> list[ImageRecord]:
    import skimage.data

    records = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        pixels = np.asarray(getattr(skimage.data, name)())[..., :3]
        records.append(ImageRecord(name, pixels=np.ascontiguousarray(pixels)))
    return records


def test_cuda_features_agree_with_cpu_features():
    model = create_model("efficientnet_lite0")
    records = _photos()
    on_cpu = extract_features(model, records, device="cpu", batch_size=4, num_workers=0)
    on_gpu = extract_features(model, records, device="cuda", batch_size=4, num_workers=2)
    assert on_gpu.shape == on_cpu.shape
    a = on_cpu.reshape(len(records), -1).astype(np.float64)
    b = on_gpu.reshape(len(records), -1).astype(np.float64)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99, cosine          # bf16 autocast: close, not identical


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_nvjpeg_path_agrees_with_the_pil_path(tmp_path):
    records = []
    for i, photo in enumerate(_photos()):
        path = tmp_path / f"{photo.id}.jpg"
        image = Image.fromarray(photo.pixels).resize((500, 375) if i % 2 else (375, 500), Image.BICUBIC)
        (image.convert("CMYK") if i == 3 else image).save(path, quality=90)   # the CMYK one falls back to PIL
        records.append(ImageRecord(photo.id, path=path))
    model = create_model("efficientnet_lite0")
    used, auto_used = {}, {}
    ours = extract_features(model, records, device="cuda", batch_size=4, num_workers=2, decode="gpu",
                            settings_out=used)
    pil = extract_features(model, records, device="cuda", batch_size=4, num_workers=2, settings_out=auto_used)
    assert (used["decode"], auto_used["decode"]) == ("nvjpeg", "nvjpeg" if AUTO_DEVICE_DECODE else "pil")
    if AUTO_DEVICE_DECODE:
        pil = extract_features(model, records, device="cuda", batch_size=4, num_workers=2, decode="pil")
    assert ours.shape == pil.shape == (4, 1280)
    cosine = _cosines(ours, pil)
    assert cosine.min() > 0.98, cosine
    assert not np.array_equal(ours[:3], pil[:3])   # nvjpeg really decoded the plain JPEGs
    kept = extract_features(model, records, device="cuda", batch_size=4, num_workers=0, jitter="keep",
                            decode="gpu")
    pil_kept = extract_features(model, records, device="cuda", batch_size=4, num_workers=0, jitter="keep",
                                decode="pil")
    assert kept.shape == (4, 10, 1280)
    assert _cosines(kept.reshape(40, -1), pil_kept.reshape(40, -1)).min() > 0.98


def test_digits_on_cuda_beats_random_init(tmp_path):
    scores = {}
    for random_init in (False, True):
        spec = EvaluationSpec(benchmark="digits", model="efficientnet_lite0", random_init=random_init,
                              device="cuda", batch_size=128, num_workers=4)
        result = run_evaluation(spec)
        assert "cuda" in str(result.provenance).lower() or "nvidia" in str(result.provenance).lower()
        assert result.provenance["model"]["extraction"]["decode"] == ("nvjpeg" if AUTO_DEVICE_DECODE else "pil")
        scores[random_init] = result.score
    assert scores[False] > scores[True] + 0.2
