"""The CUDA path (bf16 autocast, channels_last, pinned memory): runs only where a GPU is present.

CI has no GPU, so these skip there; they are run on a lent GPU machine.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.contract import EvaluationSpec
from workers.datasets.base import ImageRecord
from workers.evaluate import run_evaluation
from workers.extract import extract_features
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


def test_digits_on_cuda_beats_random_init(tmp_path):
    scores = {}
    for random_init in (False, True):
        spec = EvaluationSpec(benchmark="digits", model="efficientnet_lite0", random_init=random_init,
                              device="cuda", batch_size=128, num_workers=4)
        result = run_evaluation(spec)
        assert "cuda" in str(result.provenance).lower() or "nvidia" in str(result.provenance).lower()
        scores[random_init] = result.score
    assert scores[False] > scores[True] + 0.2
