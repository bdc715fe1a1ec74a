"""Re-scoring from the feature cache: the first evaluation against adding a protocol afterwards.

    python bench/rescore.py [--model efficientnet_lite0] [--benchmark digits] [--device cpu]

Runs the first evaluation with an empty feature cache (extraction + the SVM protocol), then the
same model with the other protocols, one at a time, as a finished submission's "add protocols"
does: the features come from the cache. Prints each run's seconds and score with its 95% interval,
and the ratio first / re-score (goal: at least 10x).
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from workers.contract import EvaluationSpec
    from workers.evaluate import run_evaluation

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--benchmark", default="digits")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    cache = Path(tempfile.mkdtemp(prefix="rescore-cache-"))

    def run(protocols):
        spec = EvaluationSpec(benchmark=args.benchmark, model=args.model, device=args.device, cache_dir=cache,
                              num_workers=args.workers, protocols=protocols)
        start = time.perf_counter()
        result = run_evaluation(spec)
        return time.perf_counter() - start, result

    def line(label, seconds, result):
        for entry in result.protocols:
            ci = entry["confidence_interval"]
            print(f"{label:<28} {seconds:8.2f} s   {entry['name']:<12} {entry['metric']} = {entry['score']:.4f} "
                  f"[{ci['low']:.4f}, {ci['high']:.4f}]   extracted {int(result.throughput['images_extracted'])}")

    first_seconds, first = run(["svm"])
    line("first evaluation (cold)", first_seconds, first)
    for protocol in ("knn", "linear_probe", "fewshot"):
        seconds, result = run([protocol])
        line(f"add {protocol} (cached)", seconds, result)
        print(f"    ratio first / re-score: {first_seconds / seconds:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
