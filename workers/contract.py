"""The engine's public contract, shared by the CLI, the Celery tasks and the site.

`run_evaluation(spec, progress)` (in `workers.evaluate`) takes an `EvaluationSpec` and returns an
`EvaluationResult`. Nothing here imports Django: the engine is usable on its own.
The Celery tasks that drive it (workers/tasks.py) are registered under the names below; the site
sends jobs by these names through the Celery app, never by importing the tasks module.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


EVALUATE_JOB_TASK = "shelfmark.evaluate_job"
EXTRACT_SHARD_TASK = "shelfmark.extract_shard"   # one slice of a large job's extraction (workers/shards.py)
REQUEUE_JOBS_TASK = "shelfmark.requeue_jobs"   # lost jobs queued again, pending ones sent


@dataclass
class EvaluationSpec:
    """What to evaluate: one model (or precomputed features) on one benchmark."""

    benchmark: str                       # engine benchmark name: "digits", "skimage_holidays", "voc2007", ...
    # a model name (workers/families.py): "efficientnet_lite0", "resnet50", "timm:ARCH", "open_clip:ARCH",
    # or a Hub id "hf-hub:ORG/NAME[@REVISION]"
    model: str | None = None
    weights: Path | None = None       # safetensors / state_dict file; None = the built-in weights
    model_dir: Path | None = None     # a local model folder in a Hub layout (timm, OpenCLIP, transformers)
    random_init: bool = False
    onnx: Path | None = None          # an ONNX model file instead of model/weights
    features: Path | None = None      # precomputed features (.npz keyed by image id) instead of a model
    data_root: Path | None = None     # ROOT of the official distribution; demo benchmarks need none
    data_options: dict[str, Any] = field(default_factory=dict)   # reader options, e.g. distractors=PATH (+1M)
    device: str = "auto"                 # auto | cpu | cuda
    layer: str | None = None          # None = penultimate (engine models, timm: any module by name)
    pooling: str = "avg"                 # avg | max, for convolutional maps
    readout: str | None = None        # OpenCLIP: projected | unprojected; transformers: cls | mean | cls+mean |
                                         # last4_cls | pooler (workers/families.py READOUTS); None = the default
    hub_cache: Path | None = None     # the Hugging Face cache the workers share (None: HF_HUB_CACHE)
    hub_token: str | None = field(default=None, repr=False)   # for gated or private repositories
    jitter: bool = False
    power_norm: float | None = None   # signed power normalisation exponent (0.5 = signed sqrt)
    l2_normalize: bool = True
    svm_c: float | None = None        # None = chosen by cross-validation on the training split
    # ovr (one-vs-rest) | ovo (one-vs-one with voting, as [1] on MIT67/CUB/Flowers) | paper (the benchmark's
    # `paper_multiclass`: what [1] used on it)
    multiclass: str = "ovr"
    # the protocols to run (workers/protocol_catalog.py); None = the benchmark's defaults
    protocols: list[str] | None = None
    # retrieval: PCA whitening learned on another (disjoint) benchmark's database, e.g. Paris for Oxford
    whitening_benchmark: str | None = None
    whitening_data: Path | None = None # that benchmark's ROOT, where it needs one
    whitening_dim: int | None = None   # PCA components kept (None = all)
    batch_size: int = 32
    num_workers: int = 2
    decode: str = "auto"                 # auto | pil | gpu (nvjpeg on CUDA): see workers/extract.py
    cache_dir: Path | None = None     # feature cache; None = no cache
    # prepared-images store (decoded, resized uint8 images, memory-mapped: workers/prepared.py), shared by
    # every model whose preprocessing up to the resize matches; None = decode the files every time
    prepared_dir: Path | None = None
    # how the protocols are solved: auto (torch on CUDA, scikit-learn on CPU) | sklearn (the reference) | torch
    solver: str = "auto"
    # extraction in shards of this many images (each one feature-cache entry: workers/shards.py); 0 = whole splits
    shard_size: int = 0
    output_dir: Path | None = None    # where the features/labels/splits of the result are written


@dataclass
class Progress:
    """One progress report. `stage` is one of: downloading (a Hub model's files: bytes), loading_model,
    extracting, training, scoring, done."""

    stage: str
    done: int = 0
    total: int = 0
    images_per_second: float = 0.0
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


ProgressCallback = Callable[[Progress], None]


@dataclass
class EvaluationResult:
    """What an evaluation produced. `score` is a fraction in [0, 1] (N-S in [0, 4] for UKBench)."""

    benchmark: str
    metric: str
    score: float                                                  # the headline: the first protocol's
    per_class: dict[str, float] = field(default_factory=dict)
    # the headline's 95% bootstrap interval: {"low", "high", "level", "resamples", "seed", "unit", "units"}
    confidence_interval: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)       # seconds per stage
    throughput: dict[str, float] = field(default_factory=dict)    # images/s
    provenance: dict[str, Any] = field(default_factory=dict)      # versions, hashes, hardware, settings
    protocol: dict[str, Any] = field(default_factory=dict)        # protocol name, version, chosen settings
    artifacts: dict[str, str] = field(default_factory=dict)       # name -> file path (features.npz, ...)
    # one entry per protocol run: name, title, version, metric, score, confidence_interval, per_class,
    # settings, artifacts (units.npz: what the score and interval are computed from)
    protocols: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the file the representation came from (weights, ONNX graph or features file);
        empty for random-init models. Written by `workers.evaluate` into `provenance["model"]`."""
        return str(self.provenance.get("model", {}).get("weights_sha256") or "")


def json_safe(value: Any) -> Any:
    """`value` with numpy scalars as Python numbers and anything else unknown (paths) as strings:
    what a JSON column or file can hold. The one rule for every engine dict that leaves the engine."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


# ---- errors ----------------------------------------------------------------------------------
# Every message is one sentence for the person who can fix it (a submitter, an operator): the site
# shows it as is, the CLI prints it after "error: ". Callers branch on the class, never on the text.

class EngineError(Exception):
    """A failure a user can act on (missing data, bad weights, wrong feature count): one clear line."""


class UploadRefused(EngineError):
    """A file a user gave (weights, ONNX graph, features) that the engine will not use."""


class UnsafeUpload(UploadRefused):
    """The file would run code or read other files when loaded (a pickle, an object array, ONNX
    external data): refused without loading it."""


class UnrecognisedUpload(UploadRefused):
    """The file's first bytes are none of the accepted formats, or the format is not the one asked for."""


class MalformedUpload(UploadRefused):
    """The format is recognised but the file cannot be read (truncated, corrupt, inconsistent)."""


class UploadTooLarge(UploadRefused):
    """The file declares or holds more data than its purpose can need (checked before it is read)."""


class WeightsMismatch(UploadRefused):
    """Tensors that do not fit the architecture: the names missing, unexpected and of the wrong shape.
    `source` names the file where that helps (the CLI); an upload's message names none."""

    def __init__(self, architecture: str, source: str, *, missing: list[str], unexpected: list[str],
                 mismatched: list[str]):
        self.architecture, self.source = architecture, source
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                parts.append(f"{label} {len(items)}: {', '.join(items[:3])}{more}")
        named = f" {source}" if source else ""
        super().__init__(f"The weights{named} don't fit {architecture}: " + "; ".join(parts))


class FeaturesMismatch(UploadRefused):
    """Precomputed features that do not match the benchmark (ids, shapes, non-finite values)."""
