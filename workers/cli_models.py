"""`python -m workers models ...`: the model families, and what a name or Hub id resolves to.

    python -m workers models                      the families, with how many architectures each knows
    python -m workers models timm                 a family's architectures, one per line
    python -m workers models NAME|HUB_ID          family, preprocessing, readouts and feature dimension (JSON)
    python -m workers models --write-index        rewrite workers/model_index.json from the installed libraries
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="list the model families, or resolve a model name or Hub id")
    models.add_argument("name", nargs="?", help="a family (engine, timm, open_clip) or a model name / Hub id")
    models.add_argument("--readout", help="the readout to measure the feature dimension with")
    models.add_argument("--layer", help="a layer (engine and timm models) to measure the feature dimension at")
    models.add_argument("--hub-cache", type=Path, help="the Hugging Face cache (default: HF_HUB_CACHE)")
    models.add_argument("--write-index", action="store_true", help="rewrite workers/model_index.json")
    models.set_defaults(func=models_command)


def models_command(args: argparse.Namespace) -> int:
    from workers import families

    if args.write_index:
        from workers.library_models import build_index

        families.INDEX_PATH.write_text(json.dumps(build_index(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {families.INDEX_PATH}")
        return 0
    index = families.load_index()
    if not args.name:
        for family, title in families.FAMILIES.items():
            known = len(index[family]["architectures"]) if family in index else "any Hub id"
            print(f"{family}\t{known}\t{title}")
        return 0
    if args.name in (families.ENGINE, families.TIMM, families.OPEN_CLIP):
        prefix = "" if args.name == families.ENGINE else f"{args.name}:"
        for architecture in sorted(index[args.name]["architectures"]):
            print(prefix + architecture)
        return 0
    about = families.preview(args.name, cache_dir=args.hub_cache)
    about["feature_dim"] = _feature_dim(args, about)
    print(json.dumps(about, indent=2))
    return 0


def _feature_dim(args: argparse.Namespace, about: dict) -> int:
    """The feature length, from one forward pass of the architecture (random weights: no download)."""
    import torch

    from workers.library_models import create_feature_model

    model = create_feature_model(args.name, random_init=True, layer=args.layer, readout=args.readout,
                                 hub_cache=args.hub_cache)
    size = about["preprocessing"]["input_size"]
    with torch.inference_mode():
        return int(model(torch.zeros(1, 3, size, size)).shape[-1])
