"""The one base class for "you asked for something that cannot be done", as opposed to a bug.

Every error the project raises for a user's mistake or a missing resource (a bad config, a checkpoint that is
not one, data that is not on disk, weights that cannot be fetched, a malformed URL list, an argument that makes
no sense) derives from `UserError`. The command line catches exactly these at its entry point and prints one
line, `error: <what> (<how to fix>)`, exiting with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what was asked for, or a missing resource; the message says what and how to fix it."""


class UsageError(UserError, ValueError):
    """Command-line arguments that parse but make no sense together (an unknown name, an impossible value)."""
