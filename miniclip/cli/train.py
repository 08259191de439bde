"""`python -m miniclip train --config configs/NAME.yaml [--out DIR] [--set key=value …] [--resume | --if-changed]`."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from miniclip.cli.args import directory
from miniclip.config import load_config
from miniclip.train.runs import run_dir, train_if_changed
from miniclip.train.trainer import StoppedAtOnce, Trainer, TrainingDiverged


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set)
    out = run_dir(config, args.out)
    try:
        if args.if_changed:
            result = train_if_changed(config, out, progress=not args.no_progress)
        else:
            result = {**Trainer(config, out, resume=args.resume, progress=not args.no_progress).run(), "out": str(out)}
    except TrainingDiverged as e:  # not the user's mistake, but no bug either: the run's state is saved
        print(f"error: {e}", file=sys.stderr)
        return 1
    except StoppedAtOnce as e:  # a second Ctrl-C: what was saved is whole, the steps since are dropped
        print(f"stopped at once by a second signal; {out}/last.* holds the last checkpoint. "
              f"Continue with: python -m miniclip train --config {args.config} --resume", file=sys.stderr)
        return 128 + e.args[0]
    if result["status"] == "up to date":
        print(f"{out}/final.safetensors is up to date with {args.config}; not retraining")
    if result["status"].startswith("interrupted"):
        print(f"{result['status']} at step {result['step']}; state saved in {out}/last.*. "
              f"Continue with: python -m miniclip train --config {args.config} --resume", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    for sig in (signal.SIGINT, signal.SIGTERM):
        if result["status"] == f"interrupted by {sig.name}":
            return 128 + sig.value
    return 0


def add_train_command(commands) -> None:
    train = commands.add_parser("train", help="train a CLIP from a YAML config (runs/<profile>/<name>/)")
    train.add_argument("--config", required=True, help="a profile in configs/, e.g. configs/ci.yaml")
    train.add_argument("--out", type=directory, help="run directory (default: runs/<profile>/<name>)")
    train.add_argument("--resume", action="store_true", help="continue from <out>/last.* if it exists")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config value, e.g. --set optim.lr=1e-3 (repeatable)")
    train.add_argument("--if-changed", action="store_true",
                       help="skip training when <out>/final.* was trained with this exact config "
                            "(and resume an unfinished run that has it)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    train.set_defaults(func=run)
