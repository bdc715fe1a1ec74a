"""What the web side needs to know about the engine (workers/): models, benchmarks, data roots.

The one place the submission flow asks the engine questions, so the form, the `submit` command and
the Celery task agree on which benchmarks can run and which weights fit.
"""
from __future__ import annotations

from pathlib import Path

from django.conf import settings


def data_roots() -> dict[str, Path]:
    """settings.SHELFMARK_DATA_ROOTS ("name=ROOT,name=ROOT") as a mapping."""
    roots = {}
    for item in settings.SHELFMARK_DATA_ROOTS.split(","):
        name, sep, root = item.partition("=")
        if sep and name.strip() and root.strip():
            roots[name.strip()] = Path(root.strip())
    return roots


def data_root(benchmark: str) -> Path | None:
    return data_roots().get(benchmark)


def runnable_benchmarks() -> list[str]:
    """Engine benchmarks this installation can run: the demos and those with a data root."""
    from workers.benchmarks import BENCHMARKS

    roots = data_roots()
    return [name for name, benchmark in BENCHMARKS.items() if not benchmark.needs_root or name in roots]


def builtin_models() -> list[str]:
    """Models whose (pretrained) weights ship with the engine."""
    from workers import models

    return [name for name in models.list_models() if models.ARCHITECTURES[name].builtin_weights is not None]


def architectures() -> list[str]:
    """Every architecture the engine can build (weights may be uploaded for any of them)."""
    from workers import models

    return models.list_models()


def weights_mismatch(architecture: str, state_dict: dict) -> str | None:
    """The engine's own strict check of names and shapes (the classifier head may be absent)."""
    from workers import models
    from workers.contract import EngineError

    spec = models.ARCHITECTURES[architecture]
    try:
        models.load_weights_into(spec.builder(), state_dict, source="file", optional_prefix=spec.head)
    except EngineError as exc:
        return str(exc).removeprefix("weights file do not fit the architecture: ")
    return None


def benchmark_image_ids(benchmark: str) -> set[str]:
    """The ids a precomputed-features file must have: one per image of the benchmark."""
    from workers.benchmarks import get_benchmark
    from workers.contract import EngineError
    from workers.datasets.base import ClassificationData

    from .validation import SubmissionRefused

    try:
        data = get_benchmark(benchmark).load(data_root(benchmark))
    except EngineError as exc:
        raise SubmissionRefused(f"Benchmark '{benchmark}' cannot be read here: {exc}") from None
    if isinstance(data, ClassificationData):
        return {record.id for records in data.splits.values() for record in records}
    ids = {record.id for record in data.database}
    ids |= {query.image.id for query in data.queries}
    return ids
