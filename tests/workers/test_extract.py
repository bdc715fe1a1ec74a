"""Feature extraction: preprocessing, batching with workers, jitter, determinism, cache, progress."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from workers.contract import EngineError
from workers.datasets.base import ImageRecord
from workers.extract import JITTER_VIEWS, FeatureCache, extract_features, load_image, preprocess
from workers.models import DataConfig


class TinyNet(torch.nn.Module):
    """A small seeded convnet that counts the images it sees (to prove cache hits)."""

    data_config = DataConfig(input_size=32, resize_size=36)
    model_hash = "tiny-test-net"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.images_seen = 0

    def forward(self, x):
        self.images_seen += len(x)
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


def _records(n: int = 10) -> list[ImageRecord]:
    rng = np.random.default_rng(0)
    return [ImageRecord(f"img{i}", pixels=rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)) for i in range(n)]


def test_preprocess_resizes_the_shorter_side_then_centre_crops():
    image = Image.fromarray(np.zeros((100, 200, 3), dtype=np.uint8))
    views = preprocess(image, DataConfig(input_size=32, resize_size=40))
    assert views.shape == (1, 3, 32, 32) and views.dtype == torch.uint8
    assert preprocess(image, DataConfig(input_size=32, resize_size=40), jitter=True).shape == (JITTER_VIEWS, 3, 32, 32)


def test_jitter_views_include_flips_of_the_crops():
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :32] = 255   # left half white
    views = preprocess(Image.fromarray(pixels), DataConfig(input_size=32, resize_size=32), jitter=True)
    assert torch.equal(views[5], views[0].flip(-1))
    assert views[1].float().mean() > views[2].float().mean()   # top-left is whiter than top-right


def test_box_crops_the_image_before_resizing():
    pixels = np.zeros((50, 50, 3), dtype=np.uint8)
    pixels[10:20, 30:40] = 200
    image = load_image(ImageRecord("q", pixels=pixels, box=(30, 10, 40, 20)))
    assert image.size == (10, 10) and np.asarray(image).min() == 200


def test_images_are_read_from_files(tmp_path):
    Image.fromarray(np.full((20, 30, 3), 90, dtype=np.uint8)).save(tmp_path / "a.jpg")
    features = extract_features(TinyNet(), [ImageRecord("a", path=tmp_path / "a.jpg")], device="cpu", num_workers=0)
    assert features.shape == (1, 8)


def test_an_unreadable_image_is_a_clear_error(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(EngineError, match="cannot read image broken"):
        extract_features(TinyNet(), [ImageRecord("broken", path=tmp_path / "broken.jpg")], device="cpu",
                         num_workers=0)


def test_extraction_is_deterministic_and_independent_of_batching_and_workers():
    records = _records()
    a = extract_features(TinyNet(), records, device="cpu", batch_size=3, num_workers=2)
    b = extract_features(TinyNet(), records, device="cpu", batch_size=10, num_workers=0)
    assert a.shape == (10, 8) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(a, extract_features(TinyNet(), records, device="cpu", batch_size=3, num_workers=2))


def test_jitter_average_and_keep():
    records = _records(4)
    kept = extract_features(TinyNet(), records, device="cpu", num_workers=0, jitter="keep")
    averaged = extract_features(TinyNet(), records, device="cpu", num_workers=0, jitter="average")
    assert kept.shape == (4, JITTER_VIEWS, 8) and averaged.shape == (4, 8)
    np.testing.assert_allclose(averaged, kept.mean(axis=1), atol=2e-3)


def test_the_cache_serves_a_second_run_without_calling_the_model(tmp_path):
    cache, records = FeatureCache(tmp_path), _records()
    first_net, second_net = TinyNet(), TinyNet()
    first = extract_features(first_net, records, device="cpu", num_workers=0, cache=cache, dataset="d", split="train")
    second = extract_features(second_net, records, device="cpu", num_workers=0, cache=cache, dataset="d", split="train")
    assert first_net.images_seen == 10 and second_net.images_seen == 0
    np.testing.assert_array_equal(first, second)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    # another split, or other pipeline settings, is another entry
    extract_features(second_net, records, device="cpu", num_workers=0, cache=cache, dataset="d", split="test")
    extract_features(second_net, records, device="cpu", num_workers=0, cache=cache, dataset="d", split="train",
                     jitter="average")
    assert second_net.images_seen == 10 + 10 * JITTER_VIEWS
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_progress_reports_images_done_and_rate():
    reports = []
    extract_features(TinyNet(), _records(), device="cpu", batch_size=4, num_workers=0, progress=reports.append)
    assert [p.done for p in reports] == [4, 8, 10]
    assert all(p.stage == "extracting" and p.total == 10 and p.images_per_second > 0 for p in reports)


def test_non_finite_features_are_refused():
    class NaNNet(TinyNet):
        def forward(self, x):
            return super().forward(x) * float("nan")

    with pytest.raises(EngineError, match="NaN"):
        extract_features(NaNNet(), _records(2), device="cpu", num_workers=0)


def test_large_jpegs_decode_in_draft_mode_no_smaller_than_the_resize(tmp_path):
    from PIL import Image as PILImage

    path = tmp_path / "big.jpg"
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (1600, 2400, 3), dtype=np.uint8)).save(path)
    full = load_image(ImageRecord("big", path=path))
    drafted = load_image(ImageRecord("big", path=path), draft_size=256)
    assert full.size == (2400, 1600)
    assert drafted.size == (600, 400)            # libjpeg's 1/4 scale: the smallest with both sides >= 256
    boxed = load_image(ImageRecord("big", path=path, box=(0, 0, 100, 50)), draft_size=256)
    assert boxed.size == (100, 50)               # a box is in full-resolution pixels: no draft
