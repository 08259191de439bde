"""`python -m miniclip <command>`: the project's command line.

One module per command group: `train`, `eval` (zero-shot, retrieval, probes, robustness), `data`, `bench` and
`experiments`. Commands that take `--json` print one JSON object on the last line of stdout, for scripts and
the book.
"""

from __future__ import annotations

import argparse
import sys

from miniclip.cli.args import require_device
from miniclip.cli.bench import add_bench_command
from miniclip.cli.data import add_data_commands
from miniclip.cli.eval import add_eval_commands
from miniclip.cli.experiments import add_experiment_commands
from miniclip.cli.train import add_train_command
from miniclip.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m miniclip", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_command(commands)
    add_eval_commands(commands)
    add_bench_command(commands)
    add_data_commands(commands)
    add_experiment_commands(commands)
    return parser


def run(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the command; errors propagate (for tests and scripts that want the exception)."""
    args = build_parser().parse_args(argv)
    if getattr(args, "device", None):
        args.device = require_device(args.device)
    return args.func(args) or 0


# Optional dependencies, imported only by the commands that need them, and the extra that installs each.
OPTIONAL_MODULES = {"img2dataset": "data", "webdataset": "data", "pandas": "data", "pyarrow": "data",
                    "open_clip": "test", "open_clip_train": "bench", "tensorboard": "test", "matplotlib": "book",
                    "umap": "book", "jupyter_cache": "book"}


def main(argv: list[str] | None = None) -> int:
    """The entry point: `run`, with the one error boundary. A `UserError` (a bad config, a missing checkpoint
    or dataset, unavailable weights, a malformed URL list, arguments that make no sense) or a missing optional
    dependency becomes one line on stderr, `error: <what> (<how to fix>)`, and exit status 2; anything else is
    a bug and keeps its traceback."""
    try:
        return run(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        module = (e.name or "").split(".")[0]
        if module not in OPTIONAL_MODULES:
            raise
        print(f"error: this command needs {module}, an optional dependency that is not installed "
              f"(pip install -e '.[{OPTIONAL_MODULES[module]}]')", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
