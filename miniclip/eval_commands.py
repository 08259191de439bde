"""`python -m miniclip eval …`: zero-shot classification and retrieval on a checkpoint."""

from __future__ import annotations

import argparse
import json


def run_eval(args: argparse.Namespace) -> int:
    from miniclip.checkpoint import load_model, read_metadata
    from miniclip.data.transforms import eval_transform

    model = load_model(args.checkpoint, args.device)
    run_config = read_metadata(args.checkpoint).get("config") or {}
    size = model.config.image_size
    kind, _, rest = args.data.partition(":")
    if args.what == "zeroshot":
        from miniclip.zeroshot import TEMPLATE_SETS, evaluate_zeroshot

        templates = TEMPLATE_SETS[args.templates]
        if kind == "shapes":
            from miniclip.data.loaders import shapes_config
            from miniclip.data.shapes import ShapesWorld

            # Single objects of the held-out (colour, shape) pairs, classified among all 64 pairs, in the
            # world the checkpoint was trained on (its held-out pairs, languages and seed), with that world's
            # own prompt grammar ("a photo of a red circle"), as the trainer's check does.
            world = ShapesWorld(shapes_config(run_config.get("data", {}).get("shapes", {}), size,
                                              run_config.get("train", {}).get("seed", 0)))
            images, labels, names = world.heldout_zeroshot(int(rest or 1000))
            dataset, templates = list(zip(images, labels.tolist())), ("{}",)
        else:
            from miniclip.data.folders import open_test_set

            dataset = open_test_set(args.data, eval_transform(size))
            names = dataset.class_names
        result = evaluate_zeroshot(model, dataset, names, templates)
        summary = f"zero-shot on {args.data}: top-1 {result['top1']:.2%}, top-5 {result['top5']:.2%} " \
                  f"(n={result['n']}, {result['classes']} classes, chance {result['chance']:.2%})"
    else:
        from miniclip.data.flickr8k import Flickr8k
        from miniclip.probes import evaluate_retrieval

        if kind != "flickr8k":
            raise SystemExit(f"error: retrieval needs --data flickr8k[:PATH], got {args.data!r}")
        dataset = Flickr8k(rest or None, split=args.split, transform=eval_transform(size), train=False)
        result = evaluate_retrieval(model, dataset)
        summary = f"retrieval on Flickr8k {args.split} ({result['images']} images, {result['captions']} captions): " + \
            ", ".join(f"{k} {v:.2%}" for k, v in result.items() if "@" in k)
    result.update(checkpoint=str(args.checkpoint), data=args.data)
    print(summary)
    if args.json:
        print(json.dumps(result))
    return 0


def add_eval_commands(commands) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a checkpoint: zero-shot classification or retrieval")
    evaluate.add_argument("what", choices=["zeroshot", "retrieval"])
    evaluate.add_argument("--checkpoint", required=True, help="a run's final.safetensors (or last.safetensors)")
    evaluate.add_argument("--data", required=True,
                          help="zeroshot: imagefolder:PATH | cifar10 | cifar100 | shapes[:N]; retrieval: flickr8k[:PATH]")
    evaluate.add_argument("--templates", default="simple", choices=["simple", "cifar"],
                          help="prompt templates for zero-shot (cifar: the paper's 18, ensembled)")
    evaluate.add_argument("--split", default="test", help="Flickr8k split for retrieval")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON on the last line")
    evaluate.set_defaults(func=run_eval)
