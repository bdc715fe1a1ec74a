"""Feature models from the libraries researchers use today: timm, OpenCLIP and transformers.

`create_library_model(name)` builds, for a name of `workers.families` (timm:ARCH, open_clip:ARCH, a
Hub id) or a local model folder in a Hub layout, a `FeatureModel` whose preprocessing is the model's
own configuration's (`workers.preprocessing`) and whose features are, by family:

    timm           the pooled pre-logits, forward_head(forward_features(x), pre_logits=True) (timm's
                   definition of "features"), or any module's output by name (`layer=`), pooled
    OpenCLIP       the image embedding after the projection ("projected", CLIP's embedding) or before
                   it ("unprojected")
    transformers   the CLS token, the mean patch token, both concatenated (DINOv2's linear evaluation),
                   the last 4 blocks' CLS tokens, or the model's pooled output (`workers.families.READOUTS`)

Nothing from a repository runs: architectures come from the installed libraries only (a timm
`architecture` timm does not list, an unknown transformers `model_type`, or a config asking for remote
code is refused), weights are safetensors read by `workers.safeload` and fitted strictly (names,
shapes, floating dtypes), and `trust_remote_code` is never set.
"""
from __future__ import annotations

import contextlib
import hashlib
import warnings
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from workers import families, hub, safeload
from workers.contract import EngineError, WeightsMismatch
from workers.models import ARCHITECTURES, FeatureModel, create_model, load_weights_into
from workers.models import check_weights as check_engine_weights
from workers.preprocessing import from_open_clip, from_timm
from workers.provenance import file_sha256

# Dual encoders whose image tower is built alone from the config's vision_config (keys "vision_model.*").
_DUAL_ENCODERS = ("clip", "siglip", "siglip2", "chinese_clip", "altclip", "metaclip_2")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


# ---- weights ------------------------------------------------------------------------------------

def _state_from(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in files:
        state.update(safeload.load_state_dict(path))
    return state


def _weights_hash(files: list[Path]) -> str:
    """SHA-256 of the one weights file, or of the shards' hashes in name order (a sharded checkpoint)."""
    if len(files) == 1:
        return file_sha256(files[0])
    return hashlib.sha256("\n".join(file_sha256(f) for f in sorted(files)).encode()).hexdigest()


def _check_dtypes(network: nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Floating tensors for floating parameters (cast to the parameter's dtype); anything else refused."""
    own = network.state_dict()
    for key, tensor in state.items():
        if key in own and own[key].is_floating_point() and not tensor.is_floating_point():
            raise EngineError(f"{source}: tensor {key} is {str(tensor.dtype).removeprefix('torch.')}, but the "
                              f"architecture's is {str(own[key].dtype).removeprefix('torch.')}: quantised or "
                              "integer weights are not accepted")
    return {key: tensor.to(own[key].dtype) if key in own and tensor.is_floating_point() else tensor
            for key, tensor in state.items()}


def _fit(network: nn.Module, state: dict, *, source: str, architecture: str, optional_prefix: str | None = None):
    load_weights_into(network, _check_dtypes(network, state, source), source=source, architecture=architecture,
                      optional_prefix=optional_prefix)


# ---- layers -------------------------------------------------------------------------------------

class _ModuleOutput(nn.Module):
    """The output of one named module of `network` (its forward runs whole; the output is kept)."""

    def __init__(self, network: nn.Module, layer: str, label: str):
        super().__init__()
        modules = dict(network.named_modules())
        if layer not in modules or not layer:
            close = [name for name in modules if name and layer.split(".")[0] in name][:5] or list(modules)[-5:]
            raise EngineError(f"{label} has no layer {layer!r}; e.g. {', '.join(close)}")
        self.network, self.layer = network, layer
        self._captured = None
        modules[layer].register_forward_hook(self._keep)

    def _keep(self, _module, _inputs, output):
        self._captured = output[0] if isinstance(output, tuple) else output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._captured = None
        self.network(images)
        return self._captured


# ---- timm ---------------------------------------------------------------------------------------

class _TimmPreLogits(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)


# What a repository's timm config may pass to the architecture (timm's save_for_hf writes these to
# rebuild a model as it was saved); never a path, a download, or a pretrained-weights switch.
_TIMM_MODEL_ARGS = frozenset({"img_size", "in_chans", "num_classes", "global_pool", "class_token", "no_embed_class",
                              "reg_tokens", "drop_rate", "drop_path_rate", "patch_size", "dynamic_img_size",
                              "dynamic_img_pad", "pos_embed", "fc_norm", "final_norm", "embed_dim", "depth",
                              "num_heads", "mlp_ratio", "qkv_bias", "init_values", "act_layer", "norm_layer"})


def _timm_kwargs(model_args, num_classes, label: str) -> dict:
    if not isinstance(model_args, dict):
        raise EngineError(f"{label}: timm model_args must be an object")
    unknown = sorted(set(model_args) - _TIMM_MODEL_ARGS)
    if unknown:
        raise EngineError(f"{label}: timm model_args {unknown[0]!r} is not accepted (only architecture settings: "
                          f"{', '.join(sorted(_TIMM_MODEL_ARGS))})")
    for key, value in model_args.items():
        plain = isinstance(value, (bool, int, float, str, type(None))) or (
            isinstance(value, list) and all(isinstance(v, (int, float)) for v in value))
        if not plain or (isinstance(value, str) and any(c in value for c in "/\\:")):
            raise EngineError(f"{label}: timm model_args {key!r} must be a plain number, flag or name")
    kwargs = dict(model_args)
    if num_classes is not None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or not 0 <= num_classes <= 100_000:
            raise EngineError(f"{label}: num_classes {num_classes!r} is not a number of classes")
        kwargs["num_classes"] = num_classes
    return kwargs


def _timm_model(architecture: str, num_classes: int | None, model_args: dict, label: str = "") -> nn.Module:
    import timm

    if not isinstance(architecture, str) or architecture not in timm.list_models():
        raise EngineError(f"timm {timm.__version__} has no architecture {architecture!r}: only the installed "
                          "library's architectures are built")
    kwargs = _timm_kwargs(model_args, num_classes, label or architecture)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return timm.create_model(architecture, pretrained=False, **kwargs)
        except (TypeError, ValueError, AssertionError) as exc:
            raise EngineError(f"{label or architecture}: timm cannot build {architecture!r} with model_args "
                              f"{sorted(kwargs)} ({str(exc).splitlines()[0][:200]})") from None


def _timm(architecture: str, *, pretrained_cfg: dict | None, num_classes: int | None, model_args: dict,
          files: list[Path], random_init: bool, layer: str | None, label: str, source: str):
    model = _timm_model(architecture, num_classes, model_args, label)
    data_config = from_timm(pretrained_cfg if pretrained_cfg is not None else dict(model.pretrained_cfg))
    if not random_init:
        classifier = model.pretrained_cfg.get("classifier") if pretrained_cfg is None else None
        _fit(model, _state_from(files), source=source, architecture=f"timm:{architecture}",
             optional_prefix=classifier if isinstance(classifier, str) else None)
    model.eval()
    network = _ModuleOutput(model, layer, label) if layer else _TimmPreLogits(model)
    return network, data_config, {"architecture": architecture, "library": f"timm {_version('timm')}"}


# ---- OpenCLIP -----------------------------------------------------------------------------------

class _OpenClipImage(nn.Module):
    """An OpenCLIP image tower; "unprojected" reads the pooled features before the final projection."""

    def __init__(self, visual: nn.Module, readout: str, label: str):
        super().__init__()
        self.visual, self.readout = visual, readout
        if readout == "unprojected" and not (hasattr(visual, "proj") or hasattr(visual, "trunk")):
            raise EngineError(f"{label}: this image tower ({type(visual).__name__}) has no separate projection; "
                              "use the readout 'projected'")

    @contextlib.contextmanager
    def _without_projection(self):
        visual = self.visual
        if self.readout != "unprojected" or not hasattr(visual, "proj"):
            yield
            return
        projection = visual.proj
        visual.proj = None            # VisionTransformer.forward skips a missing projection
        try:
            yield
        finally:
            visual.proj = projection

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.readout == "unprojected" and hasattr(self.visual, "trunk"):   # a timm trunk with a head
            return self.visual.trunk(images)
        with self._without_projection():
            out = self.visual(images)
        return out[0] if isinstance(out, tuple) else out


def _open_clip(model_cfg: dict, preprocess_cfg: dict | None, *, files: list[Path], random_init: bool,
               readout: str, label: str, source: str):
    from open_clip.model import _build_vision_tower

    vision_cfg = dict(model_cfg.get("vision_cfg", {}))
    if vision_cfg.get("timm_model_pretrained"):
        vision_cfg["timm_model_pretrained"] = False   # weights come from the repo's safetensors, not a download
    tower = vision_cfg.get("timm_model_name")
    if tower is not None:   # a timm trunk: an installed architecture by its plain name, never a hub or folder
        import timm

        if not isinstance(tower, str) or tower not in timm.list_models():
            raise EngineError(f"{label}: OpenCLIP's image tower {tower!r} is not an architecture of the installed timm")
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if vision_cfg.get(key):
            raise EngineError(f"{label}: an OpenCLIP image tower from {key} is not built (only OpenCLIP's and timm's)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            visual = _build_vision_tower(model_cfg["embed_dim"], vision_cfg,
                                         quick_gelu=model_cfg.get("quick_gelu", False))
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise EngineError(f"{label}: OpenCLIP cannot build this image tower ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    if not random_init:
        state = _state_from(files)
        if any(key.startswith("visual.") for key in state):   # a whole CLIP checkpoint: its image tower
            state = {key[len("visual."):]: value for key, value in state.items() if key.startswith("visual.")}
        _fit(visual, state, source=source, architecture=label)
    data_config = from_open_clip(getattr(visual, "image_size", vision_cfg.get("image_size", 224)), preprocess_cfg)
    about = {"library": f"open_clip {_version('open_clip_torch')}"}
    return _OpenClipImage(visual.eval(), readout, label), data_config, about


# ---- transformers -------------------------------------------------------------------------------

class _TransformersReadout(nn.Module):
    def __init__(self, model: nn.Module, readout: str):
        super().__init__()
        self.model, self.readout = model, readout

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=images, output_hidden_states=self.readout == "last4_cls", return_dict=True)
        if self.readout == "pooler":
            pooled = out.pooler_output
            return pooled.flatten(1) if pooled.dim() > 2 else pooled
        tokens = out.last_hidden_state
        if tokens.dim() == 4:   # convolutional maps: no tokens
            return tokens.mean(dim=(2, 3))
        if self.readout == "cls":
            return tokens[:, 0]
        if self.readout == "mean":
            return tokens[:, 1:].mean(dim=1)
        if self.readout == "cls+mean":
            return torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=1)
        return torch.cat([hidden[:, 0] for hidden in out.hidden_states[-4:]], dim=1)   # last4_cls


# safetensors dtypes a floating-point architecture can take (index buffers are integers); quantised
# (I8, U8, F8_*) and other integer weights are refused.
_ACCEPTED_DTYPES = frozenset({"F16", "BF16", "F32", "F64", "I64", "I32", "BOOL"})


def _check_safetensors_dtypes(files: list[Path], label: str) -> None:
    """Refuse weights of a dtype the architecture cannot take, from the safetensors headers alone."""
    for path in files:
        header = safeload.safetensors_header(path)
        for key, entry in header.items():
            if key != "__metadata__" and entry.get("dtype") not in _ACCEPTED_DTYPES:
                raise EngineError(f"{label}: tensor {key} is {entry.get('dtype')}; quantised or integer weights "
                                  "are not accepted (floating-point safetensors only)")


def _transformers(folder: hub.ModelFolder, *, random_init: bool, readout: str, label: str, source: str):
    from transformers import MODEL_MAPPING, AutoConfig
    from transformers.utils import logging as transformers_logging

    config_json = folder.configs["config.json"]
    try:
        config = AutoConfig.from_pretrained(str(folder.path), trust_remote_code=False, local_files_only=True)
        dual = config.model_type in _DUAL_ENCODERS
        vision_config = config.vision_config if dual else config
        model_class = MODEL_MAPPING[type(vision_config)]
    except (ValueError, KeyError, OSError) as exc:
        raise EngineError(f"{label}: transformers {_version('transformers')} has no vision model for model_type "
                          f"{config_json.get('model_type')!r} ({str(exc).splitlines()[0][:200]})") from None
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()   # its load report goes to the log; the refusal says what matters
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if random_init:
                model = model_class(vision_config)
            else:
                _check_safetensors_dtypes(folder.weights, label)
                # The library's own loader maps checkpoint names to its modules (transformers 5 renames
                # them at load time); safetensors only, no remote code, nothing fetched.
                model, info = model_class.from_pretrained(
                    str(folder.path), config=vision_config, trust_remote_code=False, use_safetensors=True,
                    local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True,
                    dtype=torch.float32)
                _check_loading(info, readout, source=source, architecture=f"{label} ({model_class.__name__})")
    finally:
        transformers_logging.set_verbosity(verbosity)
    model.eval()
    return _TransformersReadout(model, readout), families.folder_data_config(folder), {
        "architecture": model_class.__name__, "model_type": vision_config.model_type,
        "library": f"transformers {_version('transformers')}"}


def _check_loading(info: dict, readout: str, *, source: str, architecture: str) -> None:
    """Missing or mis-shaped tensors refuse the weights; keys the backbone lacks (a task head, the text
    tower of a dual encoder) are left out. A pooler the checkpoint has none of is fine unless read."""
    missing = sorted(key for key in info.get("missing_keys", ())
                     if not (readout != "pooler" and key.startswith("pooler.")))
    mismatched = sorted(f"{key} {tuple(saved)} vs {tuple(own)}" for key, saved, own in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise WeightsMismatch(architecture, source, missing=missing, unexpected=[], mismatched=mismatched)


# ---- the entry ----------------------------------------------------------------------------------

def _folder_model(folder: hub.ModelFolder, *, random_init: bool, layer: str | None, readout: str | None, label: str,
                  source: str):
    if folder.family == families.TIMM:
        config = folder.configs["config.json"]
        pretrained_cfg = config.get("pretrained_cfg")
        if pretrained_cfg is None:   # timm's legacy single-dict config
            pretrained_cfg = {k: v for k, v in config.items() if k not in ("architecture", "num_features")}
        num_classes = config.get("num_classes", pretrained_cfg.get("num_classes"))
        return _timm(config["architecture"], pretrained_cfg=pretrained_cfg, num_classes=num_classes,
                     model_args=config.get("model_args") or {}, files=folder.weights, random_init=random_init,
                     layer=layer, label=label, source=source)
    if folder.family == families.OPEN_CLIP:
        config = folder.configs["open_clip_config.json"]
        if "model_cfg" not in config:
            raise EngineError(f"{label}: open_clip_config.json has no model_cfg")
        return _open_clip(config["model_cfg"], config.get("preprocess_cfg"), files=folder.weights,
                          random_init=random_init, readout=readout or "projected", label=label, source=source)
    return _transformers(folder, random_init=random_init, readout=readout, label=label, source=source)


def create_library_model(name: str | None = None, *, folder: Path | None = None, weights: Path | None = None,
                         random_init: bool = False, seed: int = 0, layer: str | None = None, pooling: str = "avg",
                         readout: str | None = None, hub_cache: Path | None = None, hub_token: str | None = None,
                         report=None, weights_name: str | None = None) -> FeatureModel:
    """A `FeatureModel` for timm:ARCH / open_clip:ARCH (with `weights` or `random_init`), a Hub id, or
    a local model `folder` in a Hub layout. `report(done, total, what)` hears the download's bytes;
    `weights_name` is how a refusal calls the weights (default: the file's name; "" for an upload)."""
    if weights is not None and random_init:
        raise EngineError("give either weights or random_init, not both")
    torch.manual_seed(seed)
    extra: dict = {}
    if folder is not None:
        model_folder = hub.inspect_folder(folder, need_weights=not random_init, name="the uploaded model folder")
        label = "model folder"
    else:
        parsed = families.parse_model_name(name or "")
        label = parsed.text
        if parsed.hub_id is not None:
            if weights is not None:
                raise EngineError(f"{label} brings its own weights; a weights file is for timm:/open_clip: names")
            model_folder = hub.fetch(parsed.hub_id, cache_dir=hub_cache, token=hub_token, weights=not random_init,
                                     report=report)
            extra["hub"] = {"repo": parsed.hub_id.repo, "revision": parsed.hub_id.revision or "main",
                            "commit": model_folder.commit}
        elif parsed.family in (families.TIMM, families.OPEN_CLIP):
            model_folder = None
        else:
            raise EngineError(f"{label} is an engine model: use workers.models.create_model")
    if model_folder is not None:
        family = model_folder.family
        readout = readout or families.default_readout(family, model_folder.configs.get("config.json"))
        families.check_readout(family, readout if family != families.TIMM else None, layer)
        files = model_folder.weights
        source = weights_name if weights_name is not None else (files[0].name if len(files) == 1 else label)
        network, data_config, about = _folder_model(model_folder, random_init=random_init, layer=layer,
                                                    readout=readout, label=label, source=source)
    else:
        family = parsed.family
        readout = readout or families.default_readout(family)
        families.check_readout(family, readout if family != families.TIMM else None, layer)
        if not random_init and weights is None:
            raise EngineError(f"{label}: give a weights file (safetensors or a state_dict), or random_init; "
                              "pretrained weights come with Hub ids (hf-hub:ORG/NAME)")
        files = [Path(weights)] if weights is not None else []
        source = weights_name if weights_name is not None else (files[0].name if files else "")
        if family == families.TIMM:
            network, data_config, about = _timm(parsed.architecture, pretrained_cfg=None, num_classes=None,
                                                model_args={}, files=files, random_init=random_init, layer=layer,
                                                label=label, source=source)
        else:
            import open_clip

            model_cfg = open_clip.get_model_config(parsed.architecture)
            network, data_config, about = _open_clip(model_cfg, None, files=files, random_init=random_init,
                                                     readout=readout, label=label, source=source)
    if random_init:
        model_hash, source = f"random-init:{seed}:{label}", f"random-init (seed {seed})"
    else:
        model_hash, source = _weights_hash(files), ", ".join(f.name for f in files)
    extra.update(about, family=family)
    if not layer:
        extra["readout"] = readout
    return FeatureModel(label, network.eval(), data_config, model_hash, source, layer, pooling, extra).eval()


def create_feature_model(name: str | None = None, *, folder: Path | None = None, weights: Path | None = None,
                         random_init: bool = False, seed: int = 0, layer: str | None = None, pooling: str = "avg",
                         readout: str | None = None, hub_cache: Path | None = None, hub_token: str | None = None,
                         report=None, weights_name: str | None = None) -> FeatureModel:
    """Any model the engine knows, by name (`workers.families`) or as a local model folder: the
    engine's registry (torchvision, built-in EfficientNet-Lite) or the libraries' families."""
    if folder is None and name in ARCHITECTURES:
        if readout:
            raise EngineError(f"{name} takes a layer (and pooling), not a readout")
        return create_model(name, weights=weights, random_init=random_init, seed=seed, layer=layer, pooling=pooling)
    return create_library_model(name, folder=folder, weights=weights, random_init=random_init, seed=seed, layer=layer,
                                pooling=pooling, readout=readout, hub_cache=hub_cache, hub_token=hub_token,
                                report=report, weights_name=weights_name)


def check_weights(path: Path, architecture: str, *, source: str = "") -> str:
    """The upload check of a weights file for any architecture (engine, timm:ARCH, open_clip:ARCH):
    it loads safely and fits; returns its format."""
    if architecture in ARCHITECTURES:
        return check_engine_weights(path, architecture, source=source)
    create_library_model(architecture, weights=path, weights_name=source)
    return safeload.sniff_format(path)


# ---- the index the web reads without torch (workers/model_index.json) -------------------------

_TIMM_PREPROCESSING = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")


def build_index() -> dict:
    """The installed libraries' architectures and their default preprocessing, for `workers.families`.

    timm's entries are the default pretrained config of each architecture (`timm.models.
    get_pretrained_cfg`), stored once per distinct preprocessing ("profiles").
    """
    import open_clip
    import timm
    from timm.models import get_pretrained_cfg

    engine = {name: {"builtin": arch.builtin_weights is not None, "data_config": arch.data_config.to_dict()}
              for name, arch in sorted(ARCHITECTURES.items())}
    profiles: list[dict] = []
    timm_architectures = {}
    for name in sorted(timm.list_models()):
        cfg = get_pretrained_cfg(name)
        values = cfg.to_dict() if cfg is not None else {}
        entry = {key: list(values[key]) if isinstance(values.get(key), tuple) else values[key]
                 for key in _TIMM_PREPROCESSING if values.get(key) is not None}
        if entry not in profiles:
            profiles.append(entry)
        timm_architectures[name] = profiles.index(entry)
    clip_architectures = {}
    for name in sorted(open_clip.list_models()):
        model_cfg = open_clip.get_model_config(name) or {}
        clip_architectures[name] = {"image_size": model_cfg.get("vision_cfg", {}).get("image_size", 224),
                                    "preprocess_cfg": model_cfg.get("preprocess_cfg")}
    return {
        families.ENGINE: {"architectures": engine},
        families.TIMM: {"version": _version("timm"), "profiles": profiles, "architectures": timm_architectures},
        families.OPEN_CLIP: {"version": _version("open_clip_torch"), "architectures": clip_architectures},
    }
