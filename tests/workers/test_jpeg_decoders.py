"""The PIL pipeline's JPEG decoders: simplejpeg (libjpeg-turbo, DCT-scaled by PIL's draft rule) against
PIL's own, the fallbacks to PIL, and the decoder's place in the feature cache key and the store's."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.workers.test_extract import TinyNet, _cosines, _photo_jpegs, _records
from workers import extract
from workers.contract import EngineError
from workers.datasets.base import ImageRecord
from workers.extract import (
    AUTO_JPEG_DECODER,
    FeatureCache,
    draft_scale,
    extract_features,
    load_image,
    resolve_jpeg_decoder,
)
from workers.prepared import PreparedStore


@pytest.fixture
def simplejpeg_calls(monkeypatch):
    """The files simplejpeg decoded."""
    import simplejpeg

    calls = []
    real = simplejpeg.decode_jpeg

    def counting(data, **options):
        calls.append(len(data))
        return real(data, **options)

    monkeypatch.setattr(simplejpeg, "decode_jpeg", counting)
    return calls


def _pixels(record, draft, decoder):
    return np.asarray(load_image(record, draft_size=draft, decoder=decoder), dtype=np.int16)


@pytest.mark.parametrize("size", [(60, 45), (500, 375), (1600, 1200), (2500, 1875)])
def test_simplejpeg_decodes_at_pils_draft_scale_to_the_same_pixels(tmp_path, size, simplejpeg_calls):
    records = _photo_jpegs(tmp_path, size=size)
    gray = tmp_path / "gray.jpg"
    Image.open(records[0].path).convert("L").save(gray, quality=90)
    progressive = tmp_path / "progressive.jpg"
    Image.open(records[1].path).save(progressive, quality=90, progressive=True)
    records += [ImageRecord("gray", path=gray), ImageRecord("progressive", path=progressive)]
    for record in records:
        for draft in (None, 224, 256):
            ours, pil = _pixels(record, draft, "simplejpeg"), _pixels(record, draft, "pil")
            assert ours.shape == pil.shape   # the same DCT scale: 1/2, 1/4, 1/8 while both sides >= draft
            assert np.abs(ours - pil).mean() < 0.5, record.id   # the same libjpeg-turbo IDCT and upsampling
    assert len(simplejpeg_calls) == 3 * len(records)   # none fell back


def test_the_draft_rule_is_pils():
    assert draft_scale(2400, 1600, 256) == 4   # 600 x 400, as test_extract's draft test finds with PIL
    assert draft_scale(3264, 2448, 256) == 8 and draft_scale(500, 375, 256) == 1 and draft_scale(512, 512, 256) == 2
    assert draft_scale(5000, 300, 256) == 1 and draft_scale(60, 45, 256) == 1 and draft_scale(4000, 4000, None) == 1


def test_simplejpeg_features_agree_with_pils(tmp_path):
    from workers.models import create_model

    model, records = create_model("efficientnet_lite0"), _photo_jpegs(tmp_path)
    big = _photo_jpegs(tmp_path, names=("hubble_deep_field", "immunohistochemistry"), size=(2500, 1875))
    pil = extract_features(model, records + big, device="cpu", num_workers=0, jpeg_decoder="pil")
    ours = extract_features(model, records + big, device="cpu", num_workers=0, jpeg_decoder="simplejpeg")
    assert _cosines(pil, ours).min() >= 0.98
    assert _cosines(pil, np.roll(ours, 1, axis=0)).max() < 0.9   # the threshold tells images apart


def test_cmyk_non_jpegs_boxes_and_broken_files_fall_back_to_pil(tmp_path, simplejpeg_calls):
    pixels = np.random.default_rng(1).integers(0, 255, (40, 52, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(pixels).save(tmp_path / "png.jpg", format="PNG")   # a PNG named .jpg
    Image.fromarray(pixels).save(tmp_path / "a.webp")
    Image.fromarray(pixels).save(tmp_path / "plain.jpg")
    records = [ImageRecord("cmyk", path=tmp_path / "cmyk.jpg"), ImageRecord("png", path=tmp_path / "png.jpg"),
               ImageRecord("webp", path=tmp_path / "a.webp"), *_records(2),
               ImageRecord("box", path=tmp_path / "plain.jpg", box=(5.4, 3, 40.6, 34))]   # as the device path's
    for record in records:
        np.testing.assert_array_equal(_pixels(record, 32, "simplejpeg"), _pixels(record, 32, "pil"))
    assert simplejpeg_calls == []   # none of them was handed to simplejpeg
    np.testing.assert_array_equal(
        extract_features(TinyNet(), records, device="cpu", num_workers=0, jpeg_decoder="simplejpeg"),
        extract_features(TinyNet(), records, device="cpu", num_workers=0, jpeg_decoder="pil"))

    good = _photo_jpegs(tmp_path, names=("coffee",), size=(60, 45))[0]
    good.path.write_bytes(good.path.read_bytes()[:-200])   # truncated: simplejpeg refuses, PIL says why
    with pytest.raises(EngineError, match="cannot read image coffee"):
        extract_features(TinyNet(), [good], device="cpu", num_workers=0, jpeg_decoder="simplejpeg")
    assert len(simplejpeg_calls) == 1


def test_a_jpeg_simplejpeg_refuses_is_decoded_by_pil(tmp_path, monkeypatch):
    import simplejpeg

    records = _photo_jpegs(tmp_path, names=("astronaut", "chelsea"), size=(60, 45))

    def refuses(data, **options):
        raise ValueError("Unsupported JPEG process")

    monkeypatch.setattr(simplejpeg, "decode_jpeg", refuses)
    np.testing.assert_array_equal(
        extract_features(TinyNet(), records, device="cpu", num_workers=0, jpeg_decoder="simplejpeg"),
        extract_features(TinyNet(), records, device="cpu", num_workers=0, jpeg_decoder="pil"))


def test_the_decoder_is_part_of_the_cache_key_and_of_the_store_key(tmp_path):
    (tmp_path / "img").mkdir()
    cache, records, net = FeatureCache(tmp_path / "cache"), _photo_jpegs(tmp_path / "img", size=(60, 45)), TinyNet()
    used = {}
    for decoder in ("pil", "simplejpeg", "pil", "simplejpeg"):
        extract_features(net, records, device="cpu", num_workers=0, cache=cache, jpeg_decoder=decoder,
                         settings_out=used)
    assert net.images_seen == 2 * len(records) and cache.hits == 2
    assert used["jpeg_decoder"] == "simplejpeg" and "simplejpeg" in used["jpeg_decode"]
    pil_used = {}
    extract_features(net, records, device="cpu", num_workers=0, jpeg_decoder="pil", settings_out=pil_used)
    assert "jpeg_decoder" not in pil_used   # PIL's keys are what they were before there was a choice

    # in-memory pixels are decoded by no one: the decoder does not split their cache entries
    pixel_records, pixel_net = _records(3), TinyNet()
    for decoder in ("pil", "simplejpeg"):
        extract_features(pixel_net, pixel_records, device="cpu", num_workers=0, cache=cache, jpeg_decoder=decoder)
    assert pixel_net.images_seen == 3 and cache.hits == 3

    store = PreparedStore(tmp_path / "prepared")
    for decoder in ("pil", "simplejpeg"):
        extract_features(TinyNet(), records, device="cpu", num_workers=0, jpeg_decoder=decoder, prepared=store)
    assert store.builds == 2 and len(list((tmp_path / "prepared").glob("*.index.npz"))) == 2


def test_decoder_names_resolve(monkeypatch):
    assert resolve_jpeg_decoder("auto") == AUTO_JPEG_DECODER
    assert resolve_jpeg_decoder("pil") == "pil" and resolve_jpeg_decoder("simplejpeg") == "simplejpeg"
    with pytest.raises(EngineError, match="unknown JPEG decoder 'turbo'"):
        resolve_jpeg_decoder("turbo")
    monkeypatch.setattr(extract, "simplejpeg_available", lambda: False)
    monkeypatch.setattr(extract, "AUTO_JPEG_DECODER", "simplejpeg")
    assert resolve_jpeg_decoder("auto") == "pil"   # not installed: auto is PIL, asking for it is an error
    with pytest.raises(EngineError, match="simplejpeg is not installed"):
        resolve_jpeg_decoder("simplejpeg")
