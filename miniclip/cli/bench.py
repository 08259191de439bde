"""`python -m miniclip bench all|model|data|eval|memory|build|recipe|cost|gpu-check|speed-items`: speed against
open_clip and this machine's peak."""

from __future__ import annotations

import argparse
import json

from miniclip.bench.build import run_build_bench
from miniclip.bench.data_path import run_data_bench
from miniclip.bench.evaluation import run_eval_bench
from miniclip.bench.flops import experiment_runs, training_cost
from miniclip.bench.gpu_check import run_gpu_check
from miniclip.bench.recipe import RecipeBenchConfig, ratio_text, run_recipe_bench
from miniclip.bench.speed_items import run_speed_items, speed_items_table
from miniclip.bench.step import run_memory_bench, run_model_bench
from miniclip.bench.suite import SuiteConfig, run_all
from miniclip.cli.args import device, positive_float, positive_int
from miniclip.config import load_config
from miniclip.errors import UsageError
from miniclip.experiments.store import experiment_settings


def run(args: argparse.Namespace) -> int:
    device = args.device
    if args.what == "cost":
        return print_costs(args)
    if args.what == "gpu-check":
        summary = run_gpu_check()
        for name, goal in summary["goals"].items():
            print(f"{name}: {goal['measured']} (goal {goal['goal']}): {'met' if goal['met'] else 'NOT met'}")
        print(f"summary written to {summary['path']}")
        return 0 if summary["ok"] else 1
    if args.what == "speed-items":
        config = (args.config or ["configs/gpu-shapes.yaml"])[0]
        result = run_speed_items(config, steps=args.steps, device=device)
        print("\n".join(speed_items_table(result)))
    elif args.what == "recipe":
        result = run_recipe_bench(recipe_settings(args))
        print("\n".join(recipe_table(result)))
    elif args.what == "all":
        suite = SuiteConfig.for_device(device)
        if args.build or args.book:
            suite.sections += ("build",)
        if args.recipe:
            suite.sections += ("recipe",)
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
        result = run_all(suite)
    elif args.what == "model":
        result = run_model_bench(precisions=args.precision or ("fp32", "bf16"),
                                 batch_sizes=args.batch_size or (64, 128), arch=args.arch or "small",
                                 rounds=args.rounds or 5, device=device, compile="both" if args.compile else False)
    elif args.what == "memory":
        result = run_memory_bench(batch_sizes=args.batch_size or (64, 128), arch=args.arch or "small",
                                  precision=(args.precision or ["fp32"])[0], device=device)
    elif args.what == "data":
        result = run_data_bench(device=device)
    elif args.what == "eval":
        result = run_eval_bench(device=device)
    else:
        result = run_build_bench(book=args.book)
    print(f"results written to {result['path']}")
    if args.json:
        print(json.dumps(result, default=str))
    return 0


def recipe_settings(args: argparse.Namespace) -> RecipeBenchConfig:
    if not str(args.device).startswith("cpu"):
        raise UsageError("bench recipe runs on the CPU only (open_clip_train is given --device cpu)")
    bench = RecipeBenchConfig(budget_s=args.budget_min * 60, snapshots=args.snapshots,
                              retrieval_images=args.retrieval_images, scenes_images=args.scenes_images)
    if args.config:
        bench.config = args.config[0]
    return bench


def recipe_table(result: dict) -> list[str]:
    """Each contender's steps and final scores, then the time-to-quality ratios."""
    lines = [f"{'contender':<28} {'steps':>6} {'train s':>8} {'t->i R@10':>10} {'i->t R@10':>10} {'scenes':>7}"]
    for name, c in result["contenders"].items():
        end = c["curve"][-1]
        scenes = f"{end['scenes_ensemble_top1']:.1%}" if "scenes_ensemble_top1" in end else "-"
        lines.append(f"{name:<28} {c['steps']:>6} {end['train_s']:>8.0f} {end['text_to_image_R@10']:>10.1%} "
                     f"{end['image_to_text_R@10']:>10.1%} {scenes:>7}")
    for label, r in result["ratios"].items():
        lines.append(f"{label}: {ratio_text(r)} (to a mean R@10 of {r['target']:.1%})")
    return lines


def print_costs(args: argparse.Namespace) -> int:
    """`bench cost`: FLOPs of training each config, and minutes at an assumed sustained rate."""
    if not args.config and not args.experiments:
        raise UsageError("bench cost needs --config (training configs, e.g. configs/gpu-*.yaml) or --experiments "
                         "PROFILE")
    runs = [(path, load_config(path), 1) for path in args.config or []]
    runs += experiment_runs(experiment_settings(args.experiments)) if args.experiments else []
    costs = []
    for label, config, count in runs:
        c = training_cost(config, args.tflops)
        c.update(label=str(label), runs=count, run_pflop=c["run_pflop"] * count, minutes=c["minutes"] * count)
        costs.append(c)
        times = f"{count} x " if count > 1 else ""
        print(f"{label}: {times}{c['steps']} steps of {c['batch_size']}, {c['step_tflop']:.2f} TFLOP a step, "
              f"{c['run_pflop']:.2f} PFLOP in all: {c['minutes']:.1f} min at {args.tflops:g} TFLOP/s sustained")
    if len(costs) > 1:
        print(f"together: {sum(c['minutes'] for c in costs):.1f} min (an estimate from FLOPs, not a timing)")
    if args.json:
        print(json.dumps(costs))
    return 0


def add_bench_command(commands) -> None:
    bench = commands.add_parser("bench", help="benchmarks against open_clip and the machine's peak (runs/bench/)")
    bench.add_argument("what", choices=["all", "model", "data", "eval", "memory", "build", "recipe", "cost",
                                          "gpu-check", "speed-items"],
                       help="all: the suite and one summary table (~15 min on 2 CPU cores); model: training step, "
                            "ours vs open_clip, with ablations and MFU; data: data-path throughput vs training; "
                            "eval: zero-shot and retrieval throughput; memory: peak memory of one step; "
                            "build: pytest --nbval duration (and, with --book, each stage of make book: models, "
                            "experiments, chapters); recipe: time to a given "
                            "Flickr8k quality, open_clip's own trainer against ours, same budget (~1 h on 2 cores; "
                            "needs open_clip_train, the bench extra); cost: FLOPs of training "
                            "the --config files and the minutes they take at --tflops (an estimate, nothing runs); "
                            "gpu-check: what `make gpu-check` runs on a CUDA machine (runs/bench/gpu-check.json); "
                            "speed-items: training throughput of --config with each GPU speed item turned off in "
                            "turn (pinned memory, cuDNN autotuner, TF32, prefetch thread, loader workers, host-side "
                            "token trimming)")
    bench.add_argument("--arch", help="'small' (64 px ViT, width 256, 6+4 layers; the default), a config file "
                                      "(e.g. configs/cpu-flickr8k.yaml) or an open_clip name (ViT-B-32-quickgelu)")
    bench.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], help="default: fp32 and bf16")
    bench.add_argument("--batch-size", nargs="+", type=positive_int, help="default: 64 128 (256 on CUDA for all)")
    bench.add_argument("--rounds", type=positive_int, help="interleaved timing rounds per contender (default 5)")
    bench.add_argument("--device", default="cpu", type=device,
                       help="cpu or cuda (all on cuda: ViT-B/32, 224 px, bf16, batch 256)")
    bench.add_argument("--compile", action="store_true", help="model: also time torch.compile'd steps")
    bench.add_argument("--no-compile", action="store_true", help="all: skip the torch.compile'd steps")
    bench.add_argument("--build", action="store_true", help="all: also time pytest --nbval notebooks")
    bench.add_argument("--book", action="store_true",
                       help="build/all: also time make book, stage by stage (cpu profile; as long as make book)")
    bench.add_argument("--recipe", action="store_true", help="all: also run bench recipe (about an hour)")
    bench.add_argument("--budget-min", type=positive_float, default=15.0,
                       help="recipe: training minutes per contender (default 15)")
    bench.add_argument("--snapshots", type=positive_int, default=6,
                       help="recipe: evaluations along each run (default 6: at 1/6, 2/6, ... of it)")
    bench.add_argument("--retrieval-images", type=positive_int, help="recipe: Flickr8k test images scored (all)")
    bench.add_argument("--scenes-images", type=positive_int, help="recipe: Intel scenes images scored (all)")
    bench.add_argument("--config", nargs="+", help="cost: training configs to cost; speed-items: the config to "
                                                   "train (default configs/gpu-shapes.yaml); recipe: the recipe "
                                                   "and architecture (default configs/cpu-flickr8k.yaml)")
    bench.add_argument("--steps", type=positive_int, default=60, help="speed-items: steps per run (default 60)")
    bench.add_argument("--experiments", metavar="PROFILE", help="cost: also the runs make experiments trains there")
    bench.add_argument("--tflops", type=float, default=10.0,
                       help="cost: the sustained TFLOP/s to assume (default 10; measure yours with bench model)")
    bench.add_argument("--json", action="store_true", help="print the results as JSON on the last line")
    bench.set_defaults(func=run)
