"""`python -m workers evaluate ...` and `python -m workers benchmarks`: thin front ends over the engine.

    python -m workers evaluate --model efficientnet_lite0 --benchmark digits --out result.json
    python -m workers benchmarks [--data PARENT]     (PARENT/<benchmark name>/ holds each official copy)

`evaluate` shows a progress bar on stderr and writes `EvaluationResult.to_dict()` as JSON.
Errors a user can act on (EngineError) become one line on stderr and exit status 1 (workers/cli.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser("evaluate", help="evaluate a model (or features) on a benchmark")
    source = evaluate.add_argument_group("what to evaluate")
    source.add_argument("--model", help="a model name: efficientnet_lite0, resnet50, timm:ARCH, open_clip:ARCH, or a "
                                        "Hub id hf-hub:ORG/NAME[@REVISION] (see 'python -m workers models')")
    source.add_argument("--model-dir", type=Path, help="a local model folder in timm's, OpenCLIP's or transformers' "
                                                       "Hub layout (config files + safetensors)")
    source.add_argument("--weights", type=Path, help=".safetensors or state_dict .pth (default: built-in)")
    source.add_argument("--random-init", action="store_true", help="random weights (seed 0): a baseline")
    source.add_argument("--onnx", type=Path, help="an ONNX model whose first output is the feature")
    source.add_argument("--features", type=Path, help="precomputed features: .npz keyed by image id")
    evaluate.add_argument("--benchmark", required=True, help="benchmark name (see 'benchmarks')")
    evaluate.add_argument("--data", type=Path, help="ROOT of the benchmark's official distribution")
    evaluate.add_argument("--data-option", "-o", action="append", default=[], metavar="KEY=VALUE",
                          help="a reader option, e.g. distractors=/data/revisitop1m (Revisited +1M)")
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    evaluate.add_argument("--layer", help="graph node to take features from (default: penultimate)")
    evaluate.add_argument("--pooling", default="avg", choices=("avg", "max"))
    evaluate.add_argument("--readout", help="OpenCLIP: projected | unprojected; transformers: cls | mean | cls+mean | "
                                            "last4_cls | pooler (default: the family's)")
    evaluate.add_argument("--hub-cache", type=Path, help="Hugging Face cache folder (default: HF_HUB_CACHE); "
                                                         "the token comes from HF_TOKEN")
    evaluate.add_argument("--jitter", action="store_true", help="ten-view jittering (train: kept, test: averaged)")
    evaluate.add_argument("--power-norm", type=float, help="signed power normalisation exponent (0.5 = sqrt)")
    evaluate.add_argument("--no-l2", action="store_true", help="skip L2 normalisation of the features")
    evaluate.add_argument("--svm-c", type=float, help="fixed SVM C (default: cross-validated)")
    evaluate.add_argument("--whitening-benchmark", metavar="NAME",
                          help="retrieval: learn PCA whitening on this other benchmark (e.g. paris6k for oxford5k)")
    evaluate.add_argument("--whitening-data", type=Path, metavar="ROOT", help="that benchmark's ROOT")
    evaluate.add_argument("--whitening-dim", type=int, metavar="N", help="PCA components kept (default: all)")
    evaluate.add_argument("--multiclass", default="ovr", choices=("ovr", "ovo", "paper"),
                          help="one-vs-rest (default), one-vs-one with voting, or 'paper': what [1] used on the "
                               "benchmark (one-vs-one on MIT67, CUB and Flowers)")
    evaluate.add_argument("--decode", default="auto", choices=("auto", "pil", "gpu"),
                          help="JPEG decoding: auto (PIL for now), pil, or gpu (nvjpeg on CUDA; libjpeg-turbo "
                               "on CPU)")
    evaluate.add_argument("--protocol", action="append", dest="protocols", metavar="NAME",
                          help="a protocol to run (repeatable): svm, knn, linear_probe, fewshot (classification); "
                               "ranking, or easy, medium, hard on the revisited sets (default: the benchmark's)")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    evaluate.add_argument("--cache", type=Path, help="feature cache folder")
    evaluate.add_argument("--prepared", type=Path, metavar="DIR",
                          help="prepared-images store: decode and resize once, reuse for every later model")
    evaluate.add_argument("--solver", default="auto", choices=("auto", "sklearn", "torch"),
                          help="protocols: torch (batched, on the device) or scikit-learn (the reference); "
                               "auto: torch on CUDA, scikit-learn on CPU")
    evaluate.add_argument("--output-dir", type=Path, help="write features.npz (for reproduce.py) here")
    evaluate.add_argument("--out", type=Path, required=True, help="result JSON file ('-' for stdout)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=evaluate_command)

    benchmarks = subparsers.add_parser("benchmarks", help="list the benchmarks and whether their data is here")
    benchmarks.add_argument("--data", type=Path, help="PARENT folder holding one folder per official benchmark")
    benchmarks.set_defaults(func=benchmarks_command)


def spec_from_args(args: argparse.Namespace):
    from workers.benchmarks import get_benchmark
    from workers.contract import EvaluationSpec

    return EvaluationSpec(
        benchmark=args.benchmark, model=args.model, weights=args.weights, random_init=args.random_init,
        onnx=args.onnx, features=args.features, data_root=args.data, device=args.device, layer=args.layer,
        model_dir=args.model_dir, readout=args.readout, hub_cache=args.hub_cache,
        pooling=args.pooling, jitter=args.jitter, power_norm=args.power_norm, l2_normalize=not args.no_l2,
        svm_c=args.svm_c, multiclass=args.multiclass, batch_size=args.batch_size, num_workers=args.workers,
        decode=args.decode, protocols=args.protocols,
        data_options=get_benchmark(args.benchmark).parse_options(args.data_option),
        cache_dir=args.cache, prepared_dir=args.prepared, solver=args.solver,
        whitening_benchmark=args.whitening_benchmark, whitening_data=args.whitening_data,
        whitening_dim=args.whitening_dim,
        output_dir=args.output_dir,
    )


class _ProgressBar:
    """One tqdm bar per stage, on stderr."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        self.stage = None

    def __call__(self, progress) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        total_changed = self.bar is not None and progress.total and self.bar.total != progress.total
        if progress.stage != self.stage or total_changed:
            self.close()
            self.stage = progress.stage
            # the engine measures images/s itself; tqdm's own rate is wrong on the first big step
            self.bar = tqdm(total=progress.total or None, desc=progress.stage, file=sys.stderr,
                            leave=progress.stage == "extracting",
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        if progress.total:
            self.bar.n = progress.done
        postfix = [progress.message] if progress.message else []
        if progress.images_per_second:
            postfix.append(f"{progress.images_per_second:.1f} img/s")
        self.bar.set_postfix_str(", ".join(postfix), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def evaluate_command(args: argparse.Namespace) -> int:
    from workers.evaluate import run_evaluation

    bar = _ProgressBar(enabled=not args.quiet)
    try:
        result = run_evaluation(spec_from_args(args), bar)
    finally:
        bar.close()
    text = json.dumps(result.to_dict(), indent=2, default=str)
    if str(args.out) == "-":
        print(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        for entry in result.protocols:
            interval = entry["confidence_interval"]
            print(f"{result.benchmark} {entry['name']}: {entry['metric']} = {entry['score']:.4f} "
                  f"[{interval['low']:.4f}, {interval['high']:.4f}]", file=sys.stderr)
        print(f"-> {args.out}", file=sys.stderr)
    return 0


def benchmarks_command(args: argparse.Namespace) -> int:
    from workers.benchmarks import BENCHMARKS, availability

    for name, benchmark in BENCHMARKS.items():
        root = None
        if benchmark.needs_root and args.data is not None:
            root = args.data / name
        ok, why = availability(name, root)
        print(f"{name}\t{benchmark.kind}\t{benchmark.metric}\t{'available' if ok else 'unavailable'}\t{why}")
    return 0
