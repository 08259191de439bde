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

    device = args.device
    if args.what == "all":
        suite = bench.SuiteConfig.for_device(device)
        if args.build or args.book:
            suite.sections += ("build",)
        overrides = {"precisions": args.precision, "batch_sizes": args.batch_size, "rounds": args.rounds}
        for key, value in overrides.items():
            if value is not None:
                setattr(suite, key, tuple(value) if isinstance(value, list) else value)
        if args.batch_size:
            suite.compile_batch_sizes = tuple(args.batch_size[-1:])
        if args.arch:
            suite.archs = suite.compile_archs = (args.arch,)
        if args.no_compile:
            suite.compile_archs = ()
        result = bench.run_all(suite)
    elif args.what == "model":
        result = bench.run_model_bench(precisions=args.precision or ("fp32", "bf16"),
                                       batch_sizes=args.batch_size or (64, 128), arch=args.arch or "small",
                                       rounds=args.rounds or 5, device=device,
                                       compile="both" if args.compile else False)
    elif args.what == "memory":
        result = bench.run_memory_bench(batch_sizes=args.batch_size or (64, 128), arch=args.arch or "small",
                                        precision=(args.precision or ["fp32"])[0], device=device)
    elif args.what == "data":
        result = bench.run_data_bench(device=device)
    elif args.what == "eval":
        result = bench.run_eval_bench(device=device)
    else:
        result = bench.run_build_bench(book=args.book)
    print(f"results written to {result['path']}")
    if args.json:
        print(json.dumps(result, default=str))
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

    from miniclip.eval_commands import add_eval_commands

    add_eval_commands(commands)

    bench = commands.add_parser("bench", help="benchmarks against open_clip and the machine's peak (runs/bench/)")
    bench.add_argument("what", choices=["all", "model", "data", "eval", "memory", "build"],
                       help="all: the suite and one summary table (~15 min on 2 CPU cores); model: training step, "
                            "ours vs open_clip, with ablations and MFU; data: data-path throughput vs training; "
                            "eval: zero-shot and retrieval throughput; memory: peak memory of one step; "
                            "build: pytest --nbval duration (and make book's with --book)")
    bench.add_argument("--arch", help="'small' (64 px ViT, width 256, 6+4 layers; the default), a config file "
                                      "(e.g. configs/cpu-flickr8k.yaml) or an open_clip name (ViT-B-32-quickgelu)")
    bench.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], help="default: fp32 and bf16")
    bench.add_argument("--batch-size", nargs="+", type=int, help="default: 64 128 (256 on CUDA for all)")
    bench.add_argument("--rounds", type=int, help="interleaved timing rounds per contender (default 5)")
    bench.add_argument("--device", default="cpu", help="cpu or cuda (all on cuda: ViT-B/32, 224 px, bf16, batch 256)")
    bench.add_argument("--compile", action="store_true", help="model: also time torch.compile'd steps")
    bench.add_argument("--no-compile", action="store_true", help="all: skip the torch.compile'd steps")
    bench.add_argument("--build", action="store_true", help="all: also time pytest --nbval notebooks")
    bench.add_argument("--book", action="store_true", help="build/all: also time make book (cpu profile; long)")
    bench.add_argument("--json", action="store_true", help="print the results as JSON on the last line")
    bench.set_defaults(func=_bench)

    from miniclip.data.commands import add_data_commands
    from miniclip.experiments import add_experiment_commands

    add_data_commands(commands)
    add_experiment_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
