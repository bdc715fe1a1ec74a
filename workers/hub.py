"""Models by Hugging Face Hub id: resolve, fetch only safetensors and configuration, tell the family.

    hf-hub:ORG/NAME            the repository's main branch
    hf-hub:ORG/NAME@REVISION   a branch, tag or commit (the "hf-hub:" prefix may be left out)

`fetch` resolves the revision to its commit hash (recorded with every result; the feature cache is
keyed by the weights' hash, so the same id@commit reuses it) and downloads, with `huggingface_hub`,
only the files named in `CONFIG_FILES` and `WEIGHT_PATTERNS` into a cache the workers share. With
HF_HUB_OFFLINE=1 it reads that cache alone and says what is missing.

Nothing from a repository runs: pickled weights (`.bin`, `.pt`, `.pth`, `.ckpt`) are never
downloaded or opened, a configuration that asks for remote code (`auto_map`, `trust_remote_code`)
is refused, and the architecture must come from an installed library (`workers.library_models`).
A repository's family is told from its files:

    open_clip_config.json                             OpenCLIP (open_clip_model.safetensors)
    config.json with "architecture" (timm's format)   timm (model.safetensors)
    config.json with "model_type"                     transformers (model.safetensors, preprocessor_config.json)

Nothing here imports torch: the web process uses it to check an id and preview its preprocessing.
"""
from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workers.contract import EngineError, UnsafeUpload

PREFIX = "hf-hub:"
CONFIG_FILES = ("config.json", "preprocessor_config.json", "open_clip_config.json", "model.safetensors.index.json")
WEIGHT_PATTERNS = ("model.safetensors", "open_clip_model.safetensors", "model-*-of-*.safetensors")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
FAMILIES = ("timm", "open_clip", "transformers")
MAX_CONFIG_BYTES = 4 * 1024 * 1024
_ID = re.compile(r"^(?:hf-hub:)?(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})"
                 r"(?:@(?P<revision>[\w.-][\w./-]{0,127}))?$")
_REMOTE_CODE_KEYS = ("auto_map", "trust_remote_code", "custom_pipelines")


class HubUnavailable(EngineError):
    """The repository, revision or file cannot be had here (offline cache, network, access)."""


class RemoteCodeRefused(UnsafeUpload):
    """The configuration asks for code from the repository; Shelfmark runs none."""


class NoSafetensors(UnsafeUpload):
    """The model's weights exist only as pickles, which are never loaded."""


@dataclass(frozen=True)
class HubId:
    repo: str
    revision: str | None = None

    def __str__(self) -> str:
        return PREFIX + self.repo + (f"@{self.revision}" if self.revision else "")


def parse_hub_id(text: str) -> HubId | None:
    """The Hub id in `text`, or None when it is not one ("timm:resnet50", "efficientnet_lite0", a path).
    The repository part must also pass huggingface_hub's own rules (`validate_repo_id`)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    text = (text or "").strip()
    if ":" in text and not text.startswith(PREFIX):
        return None
    match = _ID.match(text)
    if not match or ".." in text or not text.isascii():
        return None
    try:
        validate_repo_id(match["repo"])
    except HFValidationError:
        return None
    return HubId(match["repo"], match["revision"])


@dataclass
class ModelFolder:
    """A model in one of the three Hub layouts, on local disk (a Hub snapshot or an uploaded folder)."""

    path: Path
    family: str                                 # timm | open_clip | transformers
    configs: dict[str, dict] = field(default_factory=dict)   # file name -> parsed JSON
    weights: list[Path] = field(default_factory=list)         # safetensors files
    hub_id: HubId | None = None
    commit: str | None = None

    def describe(self) -> dict:
        return {"family": self.family, "repo": self.hub_id.repo if self.hub_id else None,
                "revision": self.hub_id.revision if self.hub_id else None, "commit": self.commit}


def _read_config(path: Path) -> dict:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UnsafeUpload(f"{path.name} is larger than {MAX_CONFIG_BYTES // 2**20} MiB; no model config is")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise EngineError(f"{path.name} must hold a JSON object")
    return config


def _asks_for_remote_code(config: dict) -> str | None:
    """The key by which a configuration (or one nested in it) asks to run the repository's code."""
    for key in _REMOTE_CODE_KEYS:
        if config.get(key):
            return key
    for value in config.values():
        if isinstance(value, dict):
            found = _asks_for_remote_code(value)
            if found:
                return found
    return None


# Where each config file keeps nested settings, and what type they must be: a config of another shape
# is refused here, with its name, rather than failing somewhere inside a library.
_SHAPES = {
    "config.json": {"pretrained_cfg": dict, "model_args": dict, "vision_config": dict},
    "open_clip_config.json": {"model_cfg": dict, "preprocess_cfg": dict},
    "preprocessor_config.json": {"size": (dict, int), "crop_size": (dict, int), "image_mean": (list, float, int),
                                 "image_std": (list, float, int)},
    "model.safetensors.index.json": {"weight_map": dict},
}
MAX_CONFIG_NUMBER = 1_000_000   # no size, depth or count of a vision model's config comes near it


def _check_shapes(file: str, config: dict, label: str) -> None:
    for key, kinds in _SHAPES.get(file, {}).items():
        if key in config and config[key] is not None and not isinstance(config[key], kinds):
            raise EngineError(f"{label}: {file} has a {type(config[key]).__name__} for {key!r}")
    if file == "open_clip_config.json" and not isinstance(config.get("model_cfg", {}).get("vision_cfg", {}), dict):
        raise EngineError(f"{label}: open_clip_config.json's model_cfg.vision_cfg is not an object")
    _check_numbers(config, f"{label}: {file}")


def _check_numbers(value, where: str) -> None:
    """Refuse absurd sizes anywhere in a config (a small file must not make a process allocate terabytes)."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)) and abs(value) > MAX_CONFIG_NUMBER:
        raise EngineError(f"{where} holds the number {value}, larger than any vision model's setting")
    if isinstance(value, dict):
        for item in value.values():
            _check_numbers(item, where)
    elif isinstance(value, list):
        if len(value) > 4096:
            raise EngineError(f"{where} holds a list of {len(value)} values")
        for item in value:
            _check_numbers(item, where)


def _check_weight_map(path: Path, index: dict, label: str, need_weights: bool) -> None:
    """A sharded checkpoint's index may only name shard files of the folder itself (a path elsewhere
    would make a library read weights from anywhere on the machine); with the weights fetched, each
    one must be there."""
    for tensor, shard in index.get("weight_map", {}).items():
        if not isinstance(shard, str) or "/" in shard or "\\" in shard or shard.startswith(".") or \
                not shard.endswith(".safetensors") or need_weights and not (path / shard).is_file():
            raise UnsafeUpload(f"{label}: model.safetensors.index.json maps {tensor!r} to {shard!r}, which is not a "
                               "safetensors shard of the model's own folder")


def inspect_folder(path: Path, *, hub_id: HubId | None = None, commit: str | None = None,
                   need_weights: bool = True, name: str = "") -> ModelFolder:
    """The family of the model in `path`, its parsed configs and safetensors files; refuses remote
    code and pickle-only weights. `name` is how messages call the model (its Hub id by default)."""
    path = Path(path)
    label = name or (str(hub_id) if hub_id else "the model folder")
    configs = {file: _read_config(path / file) for file in CONFIG_FILES if (path / file).is_file()}
    for file, config in configs.items():
        key = _asks_for_remote_code(config)
        if key:
            raise RemoteCodeRefused(f"{label}: {file} sets {key!r}, which asks to run code from the repository; "
                                    "Shelfmark only builds architectures of the installed libraries")
        _check_shapes(file, config, label)
    if "model.safetensors.index.json" in configs:
        _check_weight_map(path, configs["model.safetensors.index.json"], label, need_weights)
    if "open_clip_config.json" in configs:
        family = "open_clip"
    elif "architecture" in configs.get("config.json", {}):
        family = "timm"
    elif "model_type" in configs.get("config.json", {}):
        family = "transformers"
    else:
        raise EngineError(f"{label}: no open_clip_config.json, and config.json names neither a timm "
                          "'architecture' nor a transformers 'model_type': not a model Shelfmark can build")
    weights = sorted(p for p in path.iterdir() if p.suffix == ".safetensors" and p.is_file())
    if need_weights and not weights:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        what = f"only {', '.join(pickles)} (pickles, never loaded)" if pickles else "none"
        raise NoSafetensors(f"{label} has no safetensors weights ({what}); Shelfmark loads safetensors only")
    return ModelFolder(path=path, family=family, configs=configs, weights=weights, hub_id=hub_id, commit=commit)


def _progress_bar(report: Callable[[int, int, str], None]):
    """A tqdm class that forwards huggingface_hub's byte counts to `report(done, total, what)`."""
    from tqdm.auto import tqdm

    class ReportingBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()     # the job's status page shows it, not a terminal
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            displayed = super().update(n)
            if self.unit == "B":
                report(int(self.n), int(self.total or 0), str(self.desc or "downloading"))
            return displayed

    return ReportingBar


def fetch(hub_id: HubId, *, cache_dir: Path | None = None, token: str | None = None, weights: bool = True,
          report: Callable[[int, int, str], None] | None = None) -> ModelFolder:
    """Resolve `hub_id` to a commit and fetch its configuration (and safetensors, `weights=True`).

    Offline (HF_HUB_OFFLINE=1) only the cache is read. Raises `HubUnavailable` with what is missing.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = bool(constants.HF_HUB_OFFLINE)
    patterns = list(CONFIG_FILES) + (list(WEIGHT_PATTERNS) if weights else [])
    where = " in the local Hub cache (SHELFMARK_HF_CACHE)"
    try:
        snapshot = snapshot_download(
            hub_id.repo, revision=hub_id.revision, cache_dir=str(cache_dir) if cache_dir else None, token=token,
            allow_patterns=patterns, local_files_only=offline,
            tqdm_class=_progress_bar(report) if report else None,
        )
    except GatedRepoError:
        raise HubUnavailable(f"{hub_id} is gated: accept its terms on the Hub and set a token "
                             "(SHELFMARK_HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise HubUnavailable(f"{hub_id}: revision {hub_id.revision!r} does not exist") from None
    except RepositoryNotFoundError:
        raise HubUnavailable(f"{hub_id}: no such repository (or it is private: set SHELFMARK_HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        if offline:
            raise HubUnavailable(f"{hub_id} is not{where} and HF_HUB_OFFLINE=1 forbids downloading it "
                                 f"(expected models--{hub_id.repo.replace('/', '--')} with its "
                                 f"refs/{hub_id.revision or 'main'})") from None
        raise HubUnavailable(f"{hub_id}: the Hub cannot be reached and the files are not{where}") from None
    except (HfHubHTTPError, OSError) as exc:
        raise HubUnavailable(f"{hub_id}: download failed ({str(exc).splitlines()[0][:200]})") from None
    snapshot = Path(snapshot)
    folder = inspect_folder(snapshot, hub_id=hub_id, commit=snapshot.name, need_weights=weights)
    if weights and folder.family == "transformers" and "preprocessor_config.json" not in folder.configs:
        raise HubUnavailable(f"{hub_id} has no preprocessor_config.json: its preprocessing is unknown, "
                             "and Shelfmark does not guess it")
    return folder
