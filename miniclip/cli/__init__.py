"""`python -m miniclip <command>`: the project's command line.

One module per command group: `train`, `eval` (zero-shot, retrieval, probes, robustness), `data`, `bench` and
`experiments`. Commands that take `--json` print one JSON object on the last line of stdout, for scripts and
the book.
"""

from __future__ import annotations

import argparse
import sys

from miniclip.cli.bench import add_bench_command
from miniclip.cli.data import add_data_commands
from miniclip.cli.eval import add_eval_commands
from miniclip.cli.experiments import add_experiment_commands
from miniclip.cli.train import add_train_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m miniclip", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_command(commands)
    add_eval_commands(commands)
    add_bench_command(commands)
    add_data_commands(commands)
    add_experiment_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
