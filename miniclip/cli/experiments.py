"""`python -m miniclip experiments [NAME …] [--profile P] [--force] [--json]`: the paper's experiments at small
scale, each run once and cached under runs/<profile>/experiments/ (`make experiments` runs them all)."""

from __future__ import annotations

import argparse
import json

from miniclip.env import PROFILES
from miniclip.errors import UsageError
from miniclip.experiments.registry import ALL_EXPERIMENTS, EXPERIMENTS, OPTIONAL_EXPERIMENTS
from miniclip.experiments.runner import run_experiment
from miniclip.experiments.store import results_path


def run(args: argparse.Namespace) -> int:
    names = args.names or list(EXPERIMENTS)
    unknown = [n for n in names if n not in ALL_EXPERIMENTS]
    if unknown:
        raise UsageError(f"unknown experiment {unknown[0]!r} (choose from {', '.join(ALL_EXPERIMENTS)})")
    summary = {}
    for name in names:
        record = run_experiment(name, args.profile, force=args.force)
        summary[name] = {"path": str(results_path(name, record["profile"])), "cached": record["cached"],
                         "wall_s": record["provenance"]["wall_s"]}
    if args.json:
        print(json.dumps(summary))
    return 0


def add_experiment_commands(commands) -> None:
    """`experiments [NAME …] [--profile P] [--force] [--json]` on the top-level parser's sub-commands."""
    parser = commands.add_parser("experiments", help="the paper's experiments at small scale, cached under "
                                 "runs/<profile>/experiments/")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"which to run (default: all, in this order): {', '.join(EXPERIMENTS)}; "
                        f"opt-in, by name only: {', '.join(OPTIONAL_EXPERIMENTS)}")
    parser.add_argument("--profile", choices=PROFILES, help="default: $MINICLIP_PROFILE or cpu")
    parser.add_argument("--force", action="store_true", help="rerun even when a cached result has these settings")
    parser.add_argument("--json", action="store_true", help="print a summary as JSON on the last line")
    parser.set_defaults(func=run)
