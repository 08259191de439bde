"""`python -m miniclip <command>`: the project's command line.

Commands that take `--json` print one JSON object on the last line of stdout, for scripts and the book.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys


def _bench(args: argparse.Namespace) -> int:
    from miniclip import bench

    if args.what == "model":
        result = bench.run_model_bench(precisions=args.precision, batch_sizes=args.batch_size, arch=args.arch,
                                       rounds=args.rounds, device=args.device, compile=args.compile)
    else:
        result = bench.run_data_bench()
    print(f"results written to {result['path']}")
    if args.json:
        print(json.dumps(result))
    return 0


def _train(args: argparse.Namespace) -> int:
    from miniclip.checkpoint import CheckpointError, read_metadata
    from miniclip.config import ConfigError, load_config
    from miniclip.train import Trainer, TrainingDiverged, run_dir

    try:
        config = load_config(args.config, args.set)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = run_dir(config, args.out)
    if args.if_changed:
        # A finished run with this exact config is kept; an unfinished one with it is resumed; anything
        # else is trained from scratch.
        def same_config(tag):
            try:
                return read_metadata(out / tag)["config"] == json.loads(json.dumps(config.to_dict()))
            except CheckpointError:
                return False

        if same_config("final"):
            print(f"{out}/final.safetensors is up to date with {args.config}; not retraining")
            return 0
        args.resume = same_config("last")
    try:
        result = Trainer(config, out, resume=args.resume, progress=not args.no_progress).run()
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["out"] = str(out)
    if result["status"].startswith("interrupted"):
        print(f"{result['status']} at step {result['step']}; state saved in {out}/last.*. "
              f"Continue with: python -m miniclip train --config {args.config} --resume", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    for sig in (signal.SIGINT, signal.SIGTERM):
        if result["status"] == f"interrupted by {sig.name}":
            return 128 + sig.value
    return 0


def _eval(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m miniclip", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a CLIP from a YAML config (runs/<profile>/<name>/)")
    train.add_argument("--config", required=True, help="a profile in configs/, e.g. configs/ci.yaml")
    train.add_argument("--out", help="run directory (default: runs/<profile>/<name>)")
    train.add_argument("--resume", action="store_true", help="continue from <out>/last.* if it exists")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config value, e.g. --set optim.lr=1e-3 (repeatable)")
    train.add_argument("--if-changed", action="store_true",
                       help="skip training when <out>/final.* was trained with this exact config")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    train.set_defaults(func=_train)

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
    evaluate.set_defaults(func=_eval)

    bench = commands.add_parser("bench", help="time miniclip against open_clip (results under runs/bench/)")
    bench.add_argument("what", choices=["model", "data"],
                       help="model: one training step, ours vs open_clip; data: data-path throughput vs training")
    bench.add_argument("--arch", default="small",
                       help="'small' (64 px ViT, width 256, 6+4 layers) or an open_clip model name, "
                            "e.g. ViT-B-32-quickgelu")
    bench.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    bench.add_argument("--batch-size", nargs="+", type=int, default=[128])
    bench.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per contender")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--compile", action="store_true", help="torch.compile both models first")
    bench.add_argument("--json", action="store_true", help="print the results as JSON on the last line")
    bench.set_defaults(func=_bench)

    from miniclip.data.commands import add_data_commands

    add_data_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
