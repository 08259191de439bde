"""The one base class for "you asked for something that cannot be done", as opposed to a bug.

Every error the project raises for a user's mistake or a missing resource (a bad config, a checkpoint that is
not one, data that is not on disk, weights that cannot be fetched, a malformed URL list, an argument that makes
no sense) derives from `UserError`. The command line catches exactly these at its entry point and prints one
line, `error: <what> (<how to fix>)`, exiting with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys


class UserError(Exception):
    """A mistake in what was asked for, or a missing resource; the message says what and how to fix it."""


class UsageError(UserError, ValueError):
    """Command-line arguments that parse but make no sense together (an unknown name, an impossible value)."""


class MissingDependency(UserError, ImportError):
    """An optional package a feature needs is not installed; the message names the package and the extra (or
    pip command) that installs it."""


class WriteError(UserError, OSError):
    """What a run produces could not be written (a full disk, a read-only folder); what it saved before is
    intact."""


def warn_damaged(what: str, why: str, action: str = "recomputing it") -> None:
    """One line on stderr for a cached result that cannot be trusted (truncated, edited, or not ours): it is
    never used; the caller recomputes it (or refuses, for what cannot be recomputed)."""
    print(f"warning: {what} is damaged ({why}); {action}", file=sys.stderr)
