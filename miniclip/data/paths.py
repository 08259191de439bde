"""Where real data lives, and the one error raised when it is not there.

Real datasets are looked up under `$MINICLIP_DATA` (default `~/.cache/miniclip`), in the layouts a user
gets when downloading them by hand. A missing dataset is never a crash deep inside a loader: it is a
`MissingDataError` that names the path looked in and the exact command that fetches it.
"""

from __future__ import annotations

import os
from pathlib import Path

from miniclip.errors import UserError

DEFAULT_DATA_ROOT = Path("~/.cache/miniclip")


def data_root() -> Path:
    """The folder real datasets are read from: `$MINICLIP_DATA` or `~/.cache/miniclip`."""
    return Path(os.environ.get("MINICLIP_DATA") or DEFAULT_DATA_ROOT).expanduser()


class DatasetError(UserError, ValueError):
    """A dataset that cannot be read as asked: an unknown name, a folder that is not there or holds no images,
    a layout we will not guess at. The message says what was found and what to give instead."""


class MissingDataError(UserError, FileNotFoundError):
    """A dataset was asked for but is not on disk. The message says where we looked and how to fetch it."""

    def __init__(self, name: str, looked_in: Path | str, fetch_command: str):
        self.name, self.looked_in, self.fetch_command = name, Path(looked_in), fetch_command
        super().__init__(
            f"{name} not found: looked in {self.looked_in} "
            f"(MINICLIP_DATA={os.environ.get('MINICLIP_DATA', '<unset>')}). "
            f"Fetch it with:  {fetch_command}"
        )
