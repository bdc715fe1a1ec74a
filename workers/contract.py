"""The engine's public contract, shared by the CLI, the Celery tasks and the site.

`run_evaluation(spec, progress)` (in `workers.evaluate`) takes an `EvaluationSpec` and returns an
`EvaluationResult`. Nothing here imports Django: the engine is usable on its own.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable


@dataclass
class EvaluationSpec:
    """What to evaluate: one model (or precomputed features) on one benchmark."""

    benchmark: str                       # engine benchmark name: "digits", "skimage_holidays", "voc2007", ...
    model: str | None = None          # architecture name from the model registry ("efficientnet_lite0")
    weights: Path | None = None       # safetensors / state_dict file; None = the built-in weights
    random_init: bool = False
    onnx: Path | None = None          # an ONNX model file instead of model/weights
    features: Path | None = None      # precomputed features (.npz keyed by image id) instead of a model
    data_root: Path | None = None     # ROOT of the official distribution; demo benchmarks need none
    device: str = "auto"                 # auto | cpu | cuda
    layer: str | None = None          # None = penultimate
    pooling: str = "avg"                 # avg | max, for convolutional maps
    jitter: bool = False
    power_norm: float | None = None   # signed power normalisation exponent (0.5 = signed sqrt)
    l2_normalize: bool = True
    svm_c: float | None = None        # None = chosen by cross-validation on the training split
    multiclass: str = "ovr"              # ovr (one-vs-rest) | ovo (one-vs-one with voting, as [1] on MIT67/CUB/Flowers)
    # retrieval: PCA whitening learned on another (disjoint) benchmark's database, e.g. Paris for Oxford
    whitening_benchmark: str | None = None
    whitening_data: Path | None = None # that benchmark's ROOT, where it needs one
    whitening_dim: int | None = None   # PCA components kept (None = all)
    batch_size: int = 32
    num_workers: int = 2
    cache_dir: Path | None = None     # feature cache; None = no cache
    output_dir: Path | None = None    # where the features/labels/splits of the result are written


@dataclass
class Progress:
    """One progress report. `stage` is one of: loading_model, extracting, training, scoring, done."""

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
    score: float
    per_class: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)       # seconds per stage
    throughput: dict[str, float] = field(default_factory=dict)    # images/s
    provenance: dict[str, Any] = field(default_factory=dict)      # versions, hashes, hardware, settings
    protocol: dict[str, Any] = field(default_factory=dict)        # protocol name, version, chosen settings
    artifacts: dict[str, str] = field(default_factory=dict)       # name -> file path (features.npz, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EngineError(Exception):
    """A failure a user can act on (missing data, bad weights, wrong feature count): one clear line."""
