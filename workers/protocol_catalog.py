"""The protocols a job can ask for, by name, and what each benchmark runs when none is named.

    classification   svm (the paper's linear SVMs: one-vs-rest, or one-vs-one where [1] used it),
                     knn (weighted k-NN, k = 20), linear_probe (logistic regression, C on a validation
                     split), fewshot (5-shot linear probes, mean of seeded draws)
    retrieval        ranking (cosine similarity, the benchmark's official metric);
                     on Revisited Oxford / Paris: easy, medium, hard

Defaults: classification runs svm, knn and linear_probe; retrieval runs ranking; the revisited
sets run easy, medium and hard. A benchmark may set its own (BENCHMARK_DEFAULTS): ImageNet-1k runs
linear_probe and knn, the field's protocols there (13 LinearSVC fits on 1.28 M images are not; svm
can still be asked for). One job gives one result per protocol. Nothing here imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from workers.contract import EngineError

CLASSIFICATION, RETRIEVAL = "classification", "retrieval"


@dataclass(frozen=True)
class ProtocolInfo:
    name: str
    title: str
    kind: str             # the benchmark kind it applies to
    version: str
    revisited: bool = False   # only on the revisited sets (roxford5k, rparis6k)


PROTOCOLS: dict[str, ProtocolInfo] = {info.name: info for info in (
    ProtocolInfo("svm", "linear SVMs ([1])", CLASSIFICATION, "shelfmark-protocols/1.0"),
    ProtocolInfo("knn", "weighted k-NN (k = 20)", CLASSIFICATION, "shelfmark-knn/1.0"),
    ProtocolInfo("linear_probe", "linear probe (logistic regression)", CLASSIFICATION, "shelfmark-linear-probe/1.0"),
    ProtocolInfo("fewshot", "5-shot linear probe (mean of 5 draws)", CLASSIFICATION, "shelfmark-few-shot/1.0"),
    ProtocolInfo("ranking", "cosine ranking", RETRIEVAL, "shelfmark-protocols/1.0"),
    ProtocolInfo("easy", "Revisited, Easy", RETRIEVAL, "shelfmark-revisited/1.0", revisited=True),
    ProtocolInfo("medium", "Revisited, Medium", RETRIEVAL, "shelfmark-revisited/1.0", revisited=True),
    ProtocolInfo("hard", "Revisited, Hard", RETRIEVAL, "shelfmark-revisited/1.0", revisited=True),
)}
DEFAULTS = {CLASSIFICATION: ("svm", "knn", "linear_probe"), RETRIEVAL: ("ranking",),
            "revisited": ("easy", "medium", "hard")}
# Per benchmark, where its defaults differ from its kind's (the first is the job's headline result).
BENCHMARK_DEFAULTS = {"imagenet1k": ("linear_probe", "knn")}


def _is_revisited(metric: str) -> bool:
    return metric == "revisited_map"


def applicable(kind: str, metric: str) -> list[str]:
    """The protocols a benchmark of `kind` scored by `metric` can run."""
    revisited = _is_revisited(metric)
    return [name for name, info in PROTOCOLS.items()
            if info.kind == kind and (info.revisited == revisited or kind == CLASSIFICATION)]


def default_protocols(kind: str, metric: str, benchmark: str = "") -> list[str]:
    if benchmark in BENCHMARK_DEFAULTS:
        return list(BENCHMARK_DEFAULTS[benchmark])
    return list(DEFAULTS["revisited" if _is_revisited(metric) else kind])


def resolve(kind: str, metric: str, requested: list[str] | tuple[str, ...] | None, *, benchmark: str = "") -> list[str]:
    """The protocols to run: `requested` (checked, in the catalog's order, without repeats) or the
    benchmark's defaults. A name this benchmark cannot run is refused, naming the ones it can."""
    if not requested:
        return default_protocols(kind, metric, benchmark)
    unknown = [name for name in requested if name not in PROTOCOLS]
    if unknown:
        raise EngineError(f"unknown protocol {unknown[0]!r}; known: {', '.join(PROTOCOLS)}")
    offered = applicable(kind, metric)
    wrong = [name for name in requested if name not in offered]
    if wrong:
        raise EngineError(f"{benchmark or 'this benchmark'} cannot run protocol {wrong[0]!r}; it offers "
                          f"{', '.join(offered)}")
    return [name for name in PROTOCOLS if name in requested]
