"""Helpers the notebooks share: which profile is running, and where its results live.

Notebook-only state stays in the notebooks; this module holds what more than one chapter needs.
"""

from __future__ import annotations

import os
from pathlib import Path

PROFILES = ("ci", "cpu", "gpu-1m")


def profile() -> str:
    """The active profile, from MINICLIP_PROFILE. `make book` sets "cpu"; pytest's root conftest sets "ci"."""
    name = os.environ.get("MINICLIP_PROFILE", "cpu")
    if name not in PROFILES:
        raise ValueError(f"MINICLIP_PROFILE={name!r} is not one of {', '.join(PROFILES)}")
    return name


def runs_dir(name: str | None = None) -> Path:
    """runs/<profile>/, where `make train` and `make experiments` leave checkpoints and results."""
    return Path(__file__).resolve().parent.parent / "runs" / (name or profile())
