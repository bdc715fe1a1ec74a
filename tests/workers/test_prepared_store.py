"""The prepared-images store (workers/prepared.py): built once, read by later models with the same resize,
features identical to the PIL pipeline's, checked against the images and rebuilt when they change or
the store is damaged, and the `prepare` command that builds it ahead."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from tests.workers.replicas import make_oxford5k
from tests.workers.test_extract import TinyNet, _photo_jpegs, _records
from tests.workers.test_models import _global_average_pool_onnx
from workers import prepared as prepared_module
from workers.contract import EvaluationSpec
from workers.datasets.base import ImageRecord
from workers.extract import (
    FeatureCache,
    decode_size,
    extract_features,
    load_image,
    preprocess,
    resized_shape,
    resolve_jpeg_decoder,
)
from workers.models import DataConfig
from workers.prepared import PreparedStore, Resize, crop_views


class OtherCropNet(TinyNet):
    """Another model with TinyNet's resize (36, bilinear) but its own crop and normalisation."""

    data_config = DataConfig(input_size=28, resize_size=36, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    model_hash = "other-crop-net"


class BiggerResizeNet(TinyNet):
    data_config = DataConfig(input_size=32, resize_size=40)
    model_hash = "bigger-resize-net"


@pytest.fixture
def images(tmp_path):
    """Photo JPEGs of a few sizes, a PNG, a box and in-memory pixels: every kind of record."""
    folder = tmp_path / "img"
    folder.mkdir()
    records = _photo_jpegs(folder, names=("astronaut", "chelsea", "coffee", "rocket", "camera"), size=(60, 45))
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(folder / "p.png")
    records += [ImageRecord("png", path=folder / "p.png"),
                ImageRecord("boxed", path=records[0].path, box=(3, 2, 50, 41)), *_records(2)]
    return records


@pytest.fixture
def decodes(monkeypatch):
    """How many images the store's builders decoded (num_workers=0: they run in this process)."""
    count = {"n": 0}
    real = prepared_module.load_image

    def counting(*args, **kwargs):
        count["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(prepared_module, "load_image", counting)
    return count


def _extract(model, records, **options):
    return extract_features(model, records, device="cpu", num_workers=0, batch_size=3, dataset="d", split="s",
                            **options)


def test_a_store_is_built_once_and_read_by_a_later_model_with_the_same_resize(tmp_path, images, decodes):
    store = PreparedStore(tmp_path / "prepared")
    first_used, later_used = {}, {}
    first = _extract(TinyNet(), images, prepared=store, settings_out=first_used)
    assert decodes["n"] == len(images) and store.builds == 1
    later = _extract(OtherCropNet(), images, prepared=store, settings_out=later_used)
    assert decodes["n"] == len(images)               # nothing decoded the second time
    assert store.builds == 1 and store.reads == 1
    assert (first_used["prepared_store"], later_used["prepared_store"]) == ("built", "read")
    assert len(list((tmp_path / "prepared").glob("*.index.npz"))) == 1
    # ... and both models' features are the PIL pipeline's, bit for bit
    np.testing.assert_array_equal(first, _extract(TinyNet(), images))
    np.testing.assert_array_equal(later, _extract(OtherCropNet(), images))


def test_a_read_touches_no_image_file(tmp_path, images):
    store = PreparedStore(tmp_path / "prepared")
    first = _extract(TinyNet(), images, prepared=store)
    for record in images:   # garbage where the images were, with their size and mtime: unreadable now
        if record.path is not None:
            stat = record.path.stat()
            record.path.write_bytes(b"\0" * stat.st_size)
            os.utime(record.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    np.testing.assert_array_equal(_extract(TinyNet(), images, prepared=store), first)
    assert store.builds == 1 and store.reads == 1


@pytest.mark.parametrize("jitter", [None, "keep", "average"])
@pytest.mark.parametrize("decoder", ["pil", "simplejpeg"])
def test_features_from_the_store_are_identical_to_the_pil_pipeline(tmp_path, images, jitter, decoder):
    store = PreparedStore(tmp_path / "prepared")
    pil = _extract(TinyNet(), images, jitter=jitter, jpeg_decoder=decoder)
    for batch_size in (3, 4):   # built (batches from the workers), then read (batches from the memory map)
        ours = extract_features(TinyNet(), images, device="cpu", num_workers=2, batch_size=batch_size, jitter=jitter,
                                jpeg_decoder=decoder, prepared=store, dataset="d", split="s")
        if batch_size == 3:
            np.testing.assert_array_equal(ours, pil)
        else:   # other batches: other CPU micro-batches, the same features within float rounding
            np.testing.assert_allclose(ours, pil, rtol=1e-3, atol=1e-4)
    assert store.builds == 1 and store.reads == 1


def test_the_store_does_not_change_the_feature_cache_key(tmp_path, images):
    cache, net = FeatureCache(tmp_path / "cache"), TinyNet()
    _extract(net, images, cache=cache)
    _extract(net, images, cache=cache, prepared=PreparedStore(tmp_path / "prepared"))
    assert cache.hits == 1 and net.images_seen == len(images)
    assert not (tmp_path / "prepared").exists()   # served by the feature cache: no store needed


def test_a_changed_image_rebuilds_the_store(tmp_path, images, decodes):
    store = PreparedStore(tmp_path / "prepared")
    _extract(TinyNet(), images, prepared=store)
    Image.fromarray(np.full((45, 60, 3), 200, dtype=np.uint8)).save(images[1].path)   # rewritten: size, mtime
    changed = _extract(TinyNet(), images, prepared=store)
    assert store.builds == 2 and decodes["n"] == 2 * len(images)
    np.testing.assert_array_equal(changed, _extract(TinyNet(), images))
    assert len(list((tmp_path / "prepared").glob("*.u8"))) == 1   # the old data file is gone

    pixels = images[-1].pixels.copy()
    pixels[0, 0] ^= 1   # one grey level of an in-memory image
    moved_box = ImageRecord("boxed", path=images[6].path, box=(4, 2, 50, 41))
    for edited in ([*images[:-1], ImageRecord(images[-1].id, pixels=pixels)], [*images[:6], moved_box, *images[7:]]):
        np.testing.assert_array_equal(_extract(TinyNet(), edited, prepared=store), _extract(TinyNet(), edited))
    assert store.builds == 4 and store.reads == 0


def test_a_different_resize_target_gets_another_store(tmp_path, images):
    store = PreparedStore(tmp_path / "prepared")
    _extract(TinyNet(), images, prepared=store)
    np.testing.assert_array_equal(_extract(BiggerResizeNet(), images, prepared=store),
                                  _extract(BiggerResizeNet(), images))
    bicubic = type("BicubicNet", (TinyNet,), {"data_config": DataConfig(32, 36, interpolation="bicubic")})
    squash = type("SquashNet", (TinyNet,), {"data_config": DataConfig(32, 36, resize_mode="squash")})
    for net in (bicubic(), squash()):
        np.testing.assert_array_equal(_extract(net, images, prepared=store), _extract(net, images))
    other_decoder = "pil" if resolve_jpeg_decoder("auto") == "simplejpeg" else "simplejpeg"
    _extract(TinyNet(), images, prepared=store, jpeg_decoder=other_decoder)   # the decoder is a setting too
    assert store.builds == 5 and store.reads == 0
    assert len(list((tmp_path / "prepared").glob("*.index.npz"))) == 5
    # jittering resizes to 1.14 x the crop: TinyNet's 36 again (round(32 * 1.14)), BiggerResizeNet's too
    assert decode_size(TinyNet.data_config, True) == 36
    _extract(TinyNet(), images, prepared=store, jitter="keep")
    assert store.reads == 1


def _damage_data(folder):
    data = next(folder.glob("*.u8"))
    data.write_bytes(data.read_bytes()[:-10])   # truncated


def _damage_index(folder):
    next(folder.glob("*.index.npz")).write_bytes(b"PK\x03\x04 not really a zip")


def _wrong_offsets(folder):
    index = next(folder.glob("*.index.npz"))
    with np.load(index) as stored:
        arrays = dict(stored)
    arrays["offsets"] = arrays["offsets"] + np.arange(len(arrays["offsets"]))   # lengths no longer H * W * 3
    np.savez(index, **arrays)


def _lost_data(folder):
    next(folder.glob("*.u8")).unlink()


@pytest.mark.parametrize("damage", [_damage_data, _damage_index, _wrong_offsets, _lost_data])
def test_a_damaged_store_is_rebuilt_not_trusted(tmp_path, images, damage):
    store = PreparedStore(tmp_path / "prepared")
    first = _extract(TinyNet(), images, prepared=store)
    damage(tmp_path / "prepared")
    np.testing.assert_array_equal(_extract(TinyNet(), images, prepared=store), first)
    assert store.builds == 2 and store.reads == 0
    np.testing.assert_array_equal(_extract(TinyNet(), images, prepared=store), first)
    assert store.reads == 1


def test_a_half_written_store_is_never_read(tmp_path, images):
    class FailsMidway(TinyNet):
        def forward(self, x):
            if self.images_seen >= 3:
                raise RuntimeError("killed")
            return super().forward(x)

    store = PreparedStore(tmp_path / "prepared")
    with pytest.raises(RuntimeError, match="killed"):
        _extract(FailsMidway(), images, prepared=store)
    folder = tmp_path / "prepared"
    assert not list(folder.glob("*.index.npz")) and not list(folder.glob("*.tmp"))   # nothing left to read
    (folder / f".{'0' * 64}.feedfacecafe.u8.tmp").write_bytes(b"\1" * 100)   # a build killed before its rename
    np.testing.assert_array_equal(_extract(TinyNet(), images, prepared=store), _extract(TinyNet(), images))
    assert store.builds == 1 and store.reads == 0


@pytest.mark.parametrize("config", [DataConfig(input_size=32, resize_size=40),
                                    DataConfig(input_size=31, resize_size=40, centre_crop="floor"),
                                    DataConfig(input_size=30, resize_size=36, resize_mode="squash",
                                               interpolation="bicubic")])
def test_views_from_the_store_equal_preprocess(images, config):
    for jitter in (False, True):
        resize = Resize.of(config, jitter)
        for record in images:
            image = load_image(record, draft_size=resize.size)
            filter_ = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[resize.interpolation]
            resized = np.asarray(image.resize(resized_shape(*image.size, resize.size, resize.mode), filter_))
            ours = crop_views([resized], config.input_size, jitter, config.centre_crop)[0]
            assert torch.equal(ours, preprocess(image, config, jitter))


def test_the_device_pipeline_does_not_use_the_store(tmp_path):
    records = _photo_jpegs(tmp_path, names=("astronaut", "coffee"), size=(60, 45))
    used = {}
    extract_features(TinyNet(), records, device="cpu", num_workers=0, decode="gpu",
                     prepared=tmp_path / "prepared", settings_out=used)
    assert used["decode"] == "torchvision-cpu" and "prepared_store" not in used
    assert not (tmp_path / "prepared").exists()


def test_the_prepare_cli_builds_what_a_later_evaluation_uses(tmp_path, run_cli, monkeypatch, capsys):
    from workers.cli import main
    from workers.evaluate import run_evaluation

    make_oxford5k(tmp_path / "oxford", size=16)
    _global_average_pool_onnx(tmp_path / "gap.onnx")   # resize 73, bilinear; crop 64
    done = run_cli("prepare", "oxford5k", "--data", tmp_path / "oxford", "--prepared", tmp_path / "prepared",
                   "--resize", "73", "--interpolation", "bilinear", "--workers", "0", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "oxford5k database:" in done.stderr and "oxford5k queries:" in done.stderr   # the queries have boxes
    assert len(list((tmp_path / "prepared").glob("*.index.npz"))) == 2

    decoded = []
    monkeypatch.setattr(prepared_module, "load_image", lambda *a, **k: decoded.append(a) or load_image(*a, **k))
    spec = {"benchmark": "oxford5k", "onnx": tmp_path / "gap.onnx", "data_root": tmp_path / "oxford", "num_workers": 0,
            "device": "cpu"}
    ours = run_evaluation(EvaluationSpec(**spec, prepared_dir=tmp_path / "prepared"))
    assert decoded == []   # every image came from the store
    assert ours.provenance["model"]["extraction"]["prepared_store"] == "read"
    assert ours.score == run_evaluation(EvaluationSpec(**spec)).score

    common = ["prepare", "oxford5k", "--data", str(tmp_path / "oxford"), "--prepared", str(tmp_path / "prepared"),
              "--resize", "73", "--workers", "0", "--quiet"]
    assert main([*common, "--split", "database"]) == 0 and "already prepared" in capsys.readouterr().err
    assert main([*common, "--split", "train"]) == 1 and "no split 'train'" in capsys.readouterr().err


def test_a_disk_without_room_gets_no_store_and_the_same_features(tmp_path, images, monkeypatch):
    store = PreparedStore(tmp_path / "prepared")
    monkeypatch.setattr(prepared_module, "FREE_SPACE_SPARE_BYTES", 2**62)   # no disk has that much free
    np.testing.assert_array_equal(_extract(TinyNet(), images, prepared=store), _extract(TinyNet(), images))
    assert store.builds == 0 and not [p for p in (tmp_path / "prepared").iterdir() if p.suffix != ".lock"]


def test_a_disk_that_fills_up_while_building_costs_the_store_not_the_evaluation(tmp_path, images, monkeypatch):
    store = PreparedStore(tmp_path / "prepared")

    def full(self, image):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prepared_module._Writer, "append", full)
    np.testing.assert_array_equal(_extract(TinyNet(), images, prepared=store), _extract(TinyNet(), images))
    assert store.builds == 0 and not list((tmp_path / "prepared").glob("*.index.npz"))


def test_in_memory_demo_images_are_not_prepared(tmp_path):
    store = PreparedStore(tmp_path / "prepared")
    _extract(TinyNet(), _records(4), prepared=store)
    assert store.builds == 0 and not (tmp_path / "prepared").exists()


def test_stores_prepared_in_shards_serve_a_sharded_evaluation(tmp_path, run_cli, monkeypatch):
    from tests.workers.imagenet_replica import write_imagenet_replica
    from workers.evaluate import run_evaluation

    write_imagenet_replica(tmp_path / "imagenet", classes=4, train_per_class=6, val_per_class=2, archives=False,
                           extracted=True)
    _global_average_pool_onnx(tmp_path / "gap.onnx")   # resize 73, bilinear; crop 64
    done = run_cli("prepare", "imagenet1k", "--data", tmp_path / "imagenet", "--prepared", tmp_path / "prepared",
                   "--resize", "73", "--shard-size", "10", "--workers", "0", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "imagenet1k train 21-24: 4 images" in done.stderr and "imagenet1k val: 8 images" in done.stderr
    stores = sorted((tmp_path / "prepared").glob("*.index.npz"))
    assert len(stores) == 4   # train in 10 + 10 + 4, val whole

    decoded = []
    monkeypatch.setattr(prepared_module, "load_image", lambda *a, **k: decoded.append(a) or load_image(*a, **k))
    spec = EvaluationSpec(benchmark="imagenet1k", onnx=tmp_path / "gap.onnx", data_root=tmp_path / "imagenet",
                          num_workers=0, device="cpu", shard_size=10, prepared_dir=tmp_path / "prepared",
                          protocols=["knn"])
    assert run_evaluation(spec).provenance["model"]["extraction"]["prepared_store"] == "read"
    assert decoded == [] and sorted((tmp_path / "prepared").glob("*.index.npz")) == stores
