"""Feature extraction: preprocessing, batching with workers, jitter, determinism, cache, progress,
and the device decode pipeline (bytes in the workers, decode + resize in the main process), checked
here on CPU (libjpeg-turbo through torchvision); tests/workers/test_cuda.py checks it with nvjpeg."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from workers.contract import EngineError
from workers.datasets.base import ImageRecord
from workers.extract import (
    JITTER_VIEWS,
    FeatureCache,
    decode_jpegs,
    device_decodable,
    extract_features,
    load_image,
    preprocess,
    preprocess_decoded,
    resolve_decode,
)
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


@pytest.mark.parametrize("decode", ["pil", "gpu"])
def test_an_unreadable_image_is_a_clear_error(tmp_path, decode):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(EngineError, match="cannot read image broken"):
        extract_features(TinyNet(), [ImageRecord("broken", path=tmp_path / "broken.jpg")], device="cpu",
                         num_workers=0, decode=decode)


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


# --- the device decode pipeline, on CPU ---

def _photo_jpegs(folder, names=("astronaut", "chelsea", "coffee", "rocket"), size=(500, 375)) -> list[ImageRecord]:
    import skimage.data

    records = []
    for i, name in enumerate(names):
        pixels = np.asarray(getattr(skimage.data, name)())[..., :3]
        path = folder / f"{name}.jpg"
        Image.fromarray(pixels).resize(size if i % 2 == 0 else size[::-1], Image.BICUBIC).save(path, quality=90)
        records.append(ImageRecord(name, path=path))
    return records


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_decode_modes_resolve_per_device(monkeypatch):
    from workers import extract

    assert resolve_decode("auto", "cpu") == "pil"
    assert resolve_decode("gpu", "cpu") == "torchvision-cpu"
    assert resolve_decode("pil", "cuda") == "pil"
    monkeypatch.setattr(extract, "nvjpeg_available", lambda: True)
    assert resolve_decode("gpu", "cuda") == "nvjpeg"
    assert resolve_decode("auto", "cuda") == ("nvjpeg" if extract.AUTO_DEVICE_DECODE else "pil")
    monkeypatch.setattr(extract, "AUTO_DEVICE_DECODE", True)
    assert resolve_decode("auto", "cuda") == "nvjpeg"
    monkeypatch.setattr(extract, "nvjpeg_available", lambda: False)
    assert resolve_decode("auto", "cuda") == "pil"
    with pytest.raises(EngineError, match="nvjpeg"):
        resolve_decode("gpu", "cuda")
    with pytest.raises(EngineError, match="unknown decode 'fast'"):
        resolve_decode("fast", "cpu")


def test_only_plain_jpegs_go_to_the_device_decoder():
    import io

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8))

    def encoded(img, **options) -> bytes:
        buffer = io.BytesIO()
        img.save(buffer, **options)
        return buffer.getvalue()

    assert device_decodable(encoded(image, format="JPEG"))
    assert device_decodable(encoded(image.convert("L"), format="JPEG"))
    assert device_decodable(encoded(image, format="JPEG", progressive=True, exif=Image.Exif().tobytes()))
    assert not device_decodable(encoded(image.convert("CMYK"), format="JPEG"))
    assert not device_decodable(encoded(image, format="PNG"))
    assert not device_decodable(b"\xff\xd8\xff")   # a header cut short


def test_device_preprocessing_is_within_a_few_grey_levels_of_pil(tmp_path):
    from torchvision.io import read_file

    config = DataConfig(input_size=224, resize_size=256, interpolation="bicubic")
    for record in _photo_jpegs(tmp_path):
        decoded = decode_jpegs([read_file(str(record.path))], "cpu")
        for jitter in (False, True):
            ours = preprocess_decoded(decoded, config, jitter)[0]
            pil = preprocess(load_image(record, draft_size=256), config, jitter).float()
            assert ours.shape == pil.shape == ((JITTER_VIEWS if jitter else 1), 3, 224, 224)
            assert (ours - pil).abs().mean() < 1.0
        assert torch.equal(ours[5], ours[0].flip(-1))   # the jitter views' flips, as with PIL


def test_device_pipeline_features_agree_with_the_pil_pipeline(tmp_path):
    from workers.models import create_model

    model, records = create_model("efficientnet_lite0"), _photo_jpegs(tmp_path)
    pil_settings, device_settings = {}, {}
    pil = extract_features(model, records, device="cpu", num_workers=0, decode="pil", settings_out=pil_settings)
    ours = extract_features(model, records, device="cpu", num_workers=0, decode="gpu", settings_out=device_settings)
    assert ours.shape == pil.shape == (4, 1280)
    assert _cosines(pil, ours).min() > 0.98
    assert _cosines(pil, np.roll(ours, 1, axis=0)).max() < 0.9   # the threshold tells images apart
    assert not np.array_equal(pil, ours)                         # the device path really ran
    assert (pil_settings["decode"], device_settings["decode"]) == ("pil", "torchvision-cpu")


def test_device_pipeline_is_deterministic_and_independent_of_batching_and_workers(tmp_path):
    records = _photo_jpegs(tmp_path, names=("astronaut", "chelsea", "coffee", "rocket", "camera"), size=(60, 45))
    a = extract_features(TinyNet(), records, device="cpu", batch_size=2, num_workers=2, decode="gpu")
    b = extract_features(TinyNet(), records, device="cpu", batch_size=5, num_workers=0, decode="gpu")
    assert a.shape == (5, 8)
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(a, extract_features(TinyNet(), records, device="cpu", batch_size=2,
                                                      num_workers=2, decode="gpu"))
    kept = extract_features(TinyNet(), records, device="cpu", num_workers=0, decode="gpu", jitter="keep")
    assert kept.shape == (5, JITTER_VIEWS, 8)


def test_pngs_cmyk_jpegs_boxes_and_pixels_take_the_pil_path_in_a_mixed_batch(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 255, (40, 52, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "b.jpg")
    Image.fromarray(pixels).save(tmp_path / "c.jpg")
    fallbacks = [ImageRecord("png", path=tmp_path / "a.png"), ImageRecord("cmyk", path=tmp_path / "b.jpg"),
                 ImageRecord("box", path=tmp_path / "c.jpg", box=(2, 3, 40, 38)), ImageRecord("px", pixels=pixels)]
    plain = ImageRecord("plain", path=tmp_path / "c.jpg")
    records = [fallbacks[0], plain, *fallbacks[1:]]
    ours = extract_features(TinyNet(), records, device="cpu", num_workers=0, decode="gpu")
    pil = extract_features(TinyNet(), records, device="cpu", num_workers=0, decode="pil")
    np.testing.assert_array_equal(np.delete(ours, 1, axis=0), np.delete(pil, 1, axis=0))
    assert _cosines(ours[1:2], pil[1:2])[0] > 0.98


def test_a_jpeg_the_device_decoder_refuses_falls_back_to_pil(tmp_path, monkeypatch):
    import torchvision.io

    records = _photo_jpegs(tmp_path, names=("astronaut", "chelsea", "coffee"), size=(60, 45))
    refused = records[1].path.read_bytes()
    real_decode = torchvision.io.decode_jpeg

    def picky_decode(data, **options):   # a decoder that can't read one of the files, like nvjpeg a rare one
        blobs = data if isinstance(data, list) else [data]
        if any(bytes(blob.numpy()) == refused for blob in blobs):
            raise RuntimeError("unsupported JPEG")
        return real_decode(data, **options)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", picky_decode)
    ours = extract_features(TinyNet(), records, device="cpu", num_workers=0, decode="gpu")
    monkeypatch.setattr(torchvision.io, "decode_jpeg", real_decode)
    pil = extract_features(TinyNet(), records, device="cpu", num_workers=0, decode="pil")
    device = extract_features(TinyNet(), records, device="cpu", num_workers=0, decode="gpu")
    np.testing.assert_array_equal(ours[1], pil[1])          # the refused one: exactly the PIL path
    np.testing.assert_array_equal(ours[[0, 2]], device[[0, 2]])


def test_a_truncated_jpeg_is_a_clear_error_on_the_device_path(tmp_path):
    record = _photo_jpegs(tmp_path, names=("coffee",), size=(60, 45))[0]
    record.path.write_bytes(record.path.read_bytes()[:-200])
    with pytest.raises(EngineError, match="cannot read image coffee"):
        extract_features(TinyNet(), [record], device="cpu", num_workers=0, decode="gpu")


def test_the_decode_pipeline_is_part_of_the_cache_key(tmp_path):
    (tmp_path / "img").mkdir()
    cache, records, net = FeatureCache(tmp_path / "cache"), _photo_jpegs(tmp_path / "img", size=(60, 45)), TinyNet()
    for decode in ("pil", "gpu", "pil"):
        extract_features(net, records, device="cpu", num_workers=0, cache=cache, decode=decode)
    assert net.images_seen == 2 * len(records) and cache.hits == 1
