"""timm, OpenCLIP and transformers models by name, Hub id or folder, offline: the engine's features equal
the library's own preprocessing and forward pass, the provenance says where the weights came from,
and nothing from a repository runs."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.workers.hub_models import (
    ORG,
    cosines,
    open_clip_folder,
    open_clip_reference,
    put_in_cache,
    timm_folder,
    timm_reference,
    transformers_folder,
    transformers_reference,
)
from tests.workers.replicas import make_holidays
from workers import families, hub
from workers.contract import EngineError, EvaluationSpec, WeightsMismatch
from workers.datasets.base import ImageRecord
from workers.evaluate import run_evaluation
from workers.extract import MemoryFit, extract_features
from workers.library_models import build_index, create_feature_model

assert os.environ.get("HF_HUB_OFFLINE") == "1", "these tests must never reach the network"

# transformers stand-ins and the readouts compared with the library's own
TRANSFORMERS_READOUTS = {"vit": ["cls", "mean", "cls+mean", "last4_cls"], "dinov2": ["cls", "cls+mean", "pooler"],
                         "clip": ["cls", "pooler"], "siglip": ["pooler"], "convnext": ["pooler"]}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A local Hub cache holding one stand-in repository per family (and per transformers model type)."""
    cache = tmp_path_factory.mktemp("hub-cache")
    snapshots = {}
    for repo, folder in [("test-vit", timm_folder("test_vit")), ("tiny-open-clip", open_clip_folder())] + [
            (f"tiny-{kind}", transformers_folder(kind)) for kind in TRANSFORMERS_READOUTS]:
        commit = put_in_cache(cache, f"{ORG}/{repo}", folder)
        snapshots[repo] = cache / f"models--{ORG}--{repo}" / "snapshots" / commit
    return cache, snapshots


@pytest.fixture(scope="module")
def photos():
    """Real photos of several shapes: rocket's (427 x 640) centre crops land half a pixel apart in
    torchvision (rounded) and transformers (floored), which the preprocessing must follow."""
    import skimage.data

    return [np.asarray(getattr(skimage.data, name)()) for name in ("chelsea", "coffee", "astronaut", "rocket")]


def engine_features(name, photos, cache, **options):
    model = create_feature_model(name, hub_cache=cache, **options)
    records = [ImageRecord(id=str(i), pixels=photo) for i, photo in enumerate(photos)]
    return extract_features(model, records, device="cpu", num_workers=0), model


def test_timm_hub_model_features_equal_timms_own(hub_cache, photos):
    cache, snapshots = hub_cache
    features, model = engine_features(f"hf-hub:{ORG}/test-vit", photos, cache)
    assert cosines(features, timm_reference(snapshots["test-vit"], photos)).min() >= 0.999
    about = model.describe()
    assert about["family"] == "timm" and about["readout"] == "pre_logits"
    assert about["hub"] == {"repo": f"{ORG}/test-vit", "revision": "main", "commit": snapshots["test-vit"].name}
    assert about["data_config"] == {"input_size": 160, "resize_size": 168, "mean": [0.5] * 3, "std": [0.5] * 3,
                                    "interpolation": "bicubic", "resize_mode": "shorter",
                                    "centre_crop": "round"}   # test_vit's own cfg, cropped as torchvision does
    weights = snapshots["test-vit"] / "model.safetensors"
    assert about["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_open_clip_hub_model_features_equal_open_clips_own(hub_cache, photos):
    cache, snapshots = hub_cache
    features, model = engine_features(f"hf-hub:{ORG}/tiny-open-clip", photos, cache)
    assert cosines(features, open_clip_reference(snapshots["tiny-open-clip"], photos)).min() >= 0.999
    assert model.describe()["readout"] == "projected" and features.shape == (len(photos), 32)   # embed_dim
    unprojected, _ = engine_features(f"hf-hub:{ORG}/tiny-open-clip", photos, cache, readout="unprojected")
    assert unprojected.shape == (len(photos), 64)   # the tower's width, before the projection


@pytest.mark.parametrize("kind", sorted(TRANSFORMERS_READOUTS))
def test_transformers_hub_model_features_equal_the_librarys_own(hub_cache, photos, kind):
    cache, snapshots = hub_cache
    for readout in TRANSFORMERS_READOUTS[kind]:
        features, model = engine_features(f"hf-hub:{ORG}/tiny-{kind}", photos, cache, readout=readout)
        reference = transformers_reference(snapshots[f"tiny-{kind}"], photos, readout)
        assert features.shape == reference.shape, readout
        assert cosines(features, reference).min() >= 0.999, (kind, readout)
    assert model.describe()["family"] == "transformers"


def test_the_default_readout_is_the_cls_token_or_the_models_own_pool(hub_cache):
    cache, _ = hub_cache
    defaults = {kind: create_feature_model(f"hf-hub:{ORG}/tiny-{kind}", hub_cache=cache).describe()["readout"]
                for kind in TRANSFORMERS_READOUTS}
    assert defaults == {"vit": "cls", "dinov2": "cls", "clip": "cls", "siglip": "pooler", "convnext": "pooler"}
    with pytest.raises(EngineError, match="offer the readouts cls, mean, cls\\+mean, last4_cls, pooler; not 'gap'"):
        create_feature_model(f"hf-hub:{ORG}/tiny-vit", hub_cache=cache, readout="gap")
    with pytest.raises(EngineError, match="take a readout .* not a layer"):
        create_feature_model(f"hf-hub:{ORG}/tiny-vit", hub_cache=cache, layer="encoder")


def test_timm_by_name_with_a_weights_file_or_random_init_and_any_layer(tmp_path, photos):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    library = timm.create_model("test_resnet", pretrained=False).eval()
    save_file(library.state_dict(), tmp_path / "w.safetensors")
    features, model = engine_features("timm:test_resnet", photos[:1], None, weights=tmp_path / "w.safetensors")
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(library))
    from PIL import Image

    with torch.inference_mode():
        reference = library.forward_head(library.forward_features(transform(Image.fromarray(photos[0]))[None]),
                                         pre_logits=True).numpy()
    assert cosines(features, reference).min() >= 0.999
    assert model.describe()["weights_sha256"] == hashlib.sha256((tmp_path / "w.safetensors").read_bytes()).hexdigest()

    layered, _ = engine_features("timm:test_resnet", photos[:1], None, random_init=True, layer="layer2", pooling="max")
    assert layered.shape[0] == 1 and layered.shape[1] > 0
    with pytest.raises(EngineError, match="has no layer .layer9."):
        create_feature_model("timm:test_resnet", random_init=True, layer="layer9")
    with pytest.raises(EngineError, match="give a weights file .* or random_init"):
        create_feature_model("timm:test_resnet")


def test_evaluating_a_hub_id_records_its_commit_and_reuses_the_feature_cache(hub_cache, tmp_path):
    cache, snapshots = hub_cache
    spec = EvaluationSpec(benchmark="skimage_holidays", model=f"hf-hub:{ORG}/tiny-dinov2", hub_cache=cache,
                          cache_dir=tmp_path / "features", readout="cls+mean", num_workers=0)
    first = run_evaluation(spec)
    model = first.provenance["model"]
    assert model["hub"]["commit"] == snapshots["tiny-dinov2"].name and model["readout"] == "cls+mean"
    weights = snapshots["tiny-dinov2"] / "model.safetensors"
    assert first.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert first.protocol["preprocessing"]["resize_size"] == 40   # the processor's shortest_edge
    again = run_evaluation(spec)
    assert again.throughput["images_extracted"] == 0 and again.score == first.score   # all from the cache


def test_cli_evaluates_a_hub_id_and_writes_the_librarys_features(hub_cache, tmp_path, run_cli):
    cache, snapshots = hub_cache
    make_holidays(tmp_path / "holidays")
    result = run_cli("evaluate", "--model", f"hf-hub:{ORG}/tiny-vit", "--benchmark", "holidays", "--data",
                     tmp_path / "holidays", "--hub-cache", cache, "--output-dir", tmp_path / "out", "--out",
                     tmp_path / "result.json", "--quiet", "--workers", "0")
    assert result.returncode == 0, result.stderr
    recorded = json.loads((tmp_path / "result.json").read_text())
    assert recorded["provenance"]["model"]["hub"]["commit"] == snapshots["tiny-vit"].name
    from PIL import Image

    with np.load(tmp_path / "out" / "features.npz", allow_pickle=False) as stored:
        ids, features = [str(i) for i in stored["database_ids"]], stored["database_features"]
    photos = [np.asarray(Image.open(tmp_path / "holidays" / "jpg" / f"{image_id}.jpg").convert("RGB"))
              for image_id in ids]
    assert cosines(features, transformers_reference(snapshots["tiny-vit"], photos, "cls")).min() >= 0.999


def test_the_models_command_lists_families_and_resolves_a_hub_id(hub_cache, run_cli):
    cache, snapshots = hub_cache
    listing = run_cli("models")
    assert [line.split("\t")[0] for line in listing.stdout.splitlines()] == list(families.FAMILIES)
    about = json.loads(run_cli("models", f"hf-hub:{ORG}/tiny-siglip", "--hub-cache", cache).stdout)
    assert (about["family"], about["default_readout"], about["feature_dim"]) == ("transformers", "pooler", 32)
    assert about["commit"] == snapshots["tiny-siglip"].name and about["preprocessing"]["resize_mode"] == "squash"
    assert "timm:test_vit" in run_cli("models", "timm").stdout.split()


# ---- nothing from a repository runs -------------------------------------------------------------

class _RunsCode:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def _repo_from(hub_cache, source: str, repo: str, change) -> Path:
    """A copy of stand-in `source` put into the cache as `repo`, after `change(folder)`."""
    cache, snapshots = hub_cache
    folder = Path(shutil.copytree(snapshots[source], cache.parent / f"edit-{repo}"))
    change(folder)
    put_in_cache(cache, f"{ORG}/{repo}", folder)
    return folder


def test_a_pickle_only_repo_is_refused_and_its_pickle_never_opened(hub_cache, tmp_path):
    marker = tmp_path / "pwned"

    def only_a_pickle(folder):
        (folder / "model.safetensors").unlink()
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _RunsCode(marker)}))

    _repo_from(hub_cache, "tiny-vit", "pickled-vit", only_a_pickle)
    with pytest.raises(hub.NoSafetensors, match="only pytorch_model.bin .*safetensors only"):
        create_feature_model(f"hf-hub:{ORG}/pickled-vit", hub_cache=hub_cache[0])
    assert not marker.exists()


def test_a_config_asking_for_remote_code_is_refused(hub_cache):
    def remote_code(folder):
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "modeling_evil.py").write_text("raise SystemExit('ran')\n")

    _repo_from(hub_cache, "tiny-vit", "remote-vit", remote_code)
    with pytest.raises(hub.RemoteCodeRefused, match="config.json sets 'auto_map'"):
        create_feature_model(f"hf-hub:{ORG}/remote-vit", hub_cache=hub_cache[0])


def _edit_json(folder, file, change):
    config = json.loads((folder / file).read_text())
    change(config)
    (folder / file).write_text(json.dumps(config))


def test_a_sharded_index_naming_weights_outside_the_repo_is_refused(hub_cache, tmp_path):
    from safetensors.torch import load_file

    def escape(folder):
        names = list(load_file(folder / "model.safetensors"))
        index = {"metadata": {}, "weight_map": dict.fromkeys(names, "../../../../outside.safetensors")}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))

    _repo_from(hub_cache, "tiny-vit", "escaping-vit", escape)
    with pytest.raises(hub.UnsafeUpload, match="maps .* to '../../../../outside.safetensors'.*own folder"):
        create_feature_model(f"hf-hub:{ORG}/escaping-vit", hub_cache=hub_cache[0])


def test_a_timm_config_may_only_pass_architecture_settings(hub_cache):
    _repo_from(hub_cache, "test-vit", "checkpoint-timm", lambda folder: _edit_json(
        folder, "config.json", lambda c: c.update(model_args={"checkpoint_path": "/etc/passwd"})))
    with pytest.raises(EngineError, match="model_args 'checkpoint_path' is not accepted"):
        create_feature_model(f"hf-hub:{ORG}/checkpoint-timm", hub_cache=hub_cache[0])
    _repo_from(hub_cache, "test-vit", "huge-timm", lambda folder: _edit_json(
        folder, "config.json", lambda c: c.update(model_args={"embed_dim": 10**9})))
    with pytest.raises(EngineError, match="holds the number 1000000000"):
        families.preview(f"hf-hub:{ORG}/huge-timm", cache_dir=hub_cache[0])


def test_an_open_clip_tower_must_be_an_installed_timm_architecture(hub_cache):
    _repo_from(hub_cache, "tiny-open-clip", "hub-tower-clip", lambda folder: _edit_json(
        folder, "open_clip_config.json", lambda c: c["model_cfg"]["vision_cfg"].update(
            timm_model_name="hf-hub:evil/tower", timm_model_pretrained=True)))
    with pytest.raises(EngineError, match="image tower 'hf-hub:evil/tower' is not an architecture of the installed"):
        create_feature_model(f"hf-hub:{ORG}/hub-tower-clip", hub_cache=hub_cache[0])
    _repo_from(hub_cache, "tiny-open-clip", "hf-tower-clip", lambda folder: _edit_json(
        folder, "open_clip_config.json", lambda c: c["model_cfg"]["vision_cfg"].update(hf_model_name="evil/model")))
    with pytest.raises(EngineError, match="tower from hf_model_name is not built"):
        create_feature_model(f"hf-hub:{ORG}/hf-tower-clip", hub_cache=hub_cache[0])


def test_a_malformed_preprocessing_config_is_refused_with_its_name(hub_cache):
    _repo_from(hub_cache, "tiny-vit", "odd-size-vit", lambda folder: _edit_json(
        folder, "preprocessor_config.json", lambda c: c.update(size="large")))
    with pytest.raises(EngineError, match="preprocessor_config.json has a str for 'size'"):
        families.preview(f"hf-hub:{ORG}/odd-size-vit", cache_dir=hub_cache[0])
    _repo_from(hub_cache, "tiny-vit", "odd-mean-vit", lambda folder: _edit_json(
        folder, "preprocessor_config.json", lambda c: c.update(image_mean=["a", "b", "c"])))
    unreadable = "odd-mean-vit: its preprocessing configuration can't be read"
    with pytest.raises(EngineError, match=unreadable):      # the form's preview
        families.preview(f"hf-hub:{ORG}/odd-mean-vit", cache_dir=hub_cache[0])
    with pytest.raises(EngineError, match=unreadable):      # and the worker alike
        create_feature_model(f"hf-hub:{ORG}/odd-mean-vit", hub_cache=hub_cache[0])


def test_tensors_that_do_not_fit_or_are_quantised_are_refused(hub_cache):
    from safetensors.torch import load_file, save_file

    def reshape(folder):
        state = load_file(folder / "model.safetensors")
        key = next(k for k in state if k.endswith("cls_token"))
        state[key] = torch.zeros(5)
        save_file(state, folder / "model.safetensors")

    def quantise(folder):
        state = load_file(folder / "model.safetensors")
        key = next(k for k in state if k.endswith("query.weight"))
        state[key] = state[key].to(torch.int8)
        save_file(state, folder / "model.safetensors")

    _repo_from(hub_cache, "tiny-vit", "reshaped-vit", reshape)
    _repo_from(hub_cache, "tiny-vit", "int8-vit", quantise)
    with pytest.raises(WeightsMismatch, match=r"shape mismatch 1: embeddings.cls_token \(5,\) vs \(1, 1, 32\)"):
        create_feature_model(f"hf-hub:{ORG}/reshaped-vit", hub_cache=hub_cache[0])
    with pytest.raises(EngineError, match="is I8; quantised or integer weights are not accepted"):
        create_feature_model(f"hf-hub:{ORG}/int8-vit", hub_cache=hub_cache[0])

    def rename_architecture(folder):
        config = json.loads((folder / "config.json").read_text())
        config["architecture"] = "evil_net"
        (folder / "config.json").write_text(json.dumps(config))

    _repo_from(hub_cache, "test-vit", "unknown-timm", rename_architecture)
    with pytest.raises(EngineError, match="timm .* has no architecture 'evil_net'"):
        create_feature_model(f"hf-hub:{ORG}/unknown-timm", hub_cache=hub_cache[0])


def test_offline_a_missing_repo_says_what_is_missing(hub_cache):
    with pytest.raises(hub.HubUnavailable, match=f"hf-hub:{ORG}/absent@v2 is not in the local Hub cache .*"
                                                 f"HF_HUB_OFFLINE=1 .*models--{ORG}--absent with its refs/v2"):
        create_feature_model(f"hf-hub:{ORG}/absent@v2", hub_cache=hub_cache[0])


def test_a_transformers_repo_without_its_preprocessing_is_refused(hub_cache):
    _repo_from(hub_cache, "tiny-vit", "bare-vit", lambda folder: (folder / "preprocessor_config.json").unlink())
    with pytest.raises(EngineError, match="no preprocessor_config.json: its preprocessing is unknown"):
        create_feature_model(f"hf-hub:{ORG}/bare-vit", hub_cache=hub_cache[0])


def test_names_are_parsed_without_the_libraries():
    assert families.parse_model_name("timm:test_vit").family == "timm"
    assert families.parse_model_name("hf-hub:facebook/dinov2-small@main").hub_id == hub.HubId("facebook/dinov2-small",
                                                                                             "main")
    assert families.parse_model_name("facebook/dinov2-small").hub_id.repo == "facebook/dinov2-small"
    for bad in ("timm:no_such_net", "open_clip:nope", "hf-hub:../etc/passwd", "whatever"):
        with pytest.raises(EngineError):
            families.parse_model_name(bad)


def test_the_model_index_is_the_installed_libraries():
    # the web reads model_index.json to validate names without torch: it must not drift from the libraries
    assert build_index() == families.load_index(), "run: python -m workers models --write-index"


def test_a_batch_that_does_not_fit_the_device_is_halved_until_it_does():
    class OutOfMemory(Exception):
        pass

    seen = []

    def run(chunk):
        seen.append(len(chunk))
        if len(chunk) > 3:
            raise OutOfMemory
        return chunk * 2

    fit = MemoryFit(out_of_memory=OutOfMemory)
    images = torch.arange(10.0)
    assert torch.equal(fit(run, images), images * 2) and fit.size == 2   # 10 -> 5 -> 2
    seen.clear()
    assert torch.equal(fit(run, images), images * 2) and seen == [2, 2, 2, 2, 2]   # starts where it fitted
    with pytest.raises(EngineError, match="one image does not fit"):
        MemoryFit(out_of_memory=OutOfMemory)(lambda chunk: (_ for _ in ()).throw(OutOfMemory()), images)
