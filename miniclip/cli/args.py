"""Argument types the commands share: a number out of range or a device that is not there is an argparse
error (usage and one `error:` line, exit status 2) before any work starts."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from miniclip.env import default_device
from miniclip.errors import UsageError


def positive_int(text: str) -> int:
    """An integer >= 1 (a batch size, a count of images, seeds or rounds)."""
    value = int_value(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer (give 1 or more)")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a seed, a count of retries)."""
    value = int_value(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative (give 0 or more)")
    return value


def positive_float(text: str) -> float:
    """A number > 0 (minutes, seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number (give more than 0)")
    return value


def int_value(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def directory(text: str) -> Path:
    """A directory to write into: it may not exist yet, but must not be a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a directory (give a folder to write into)")
    return path


def device(text: str) -> str:
    """`auto`, `cpu`, `cuda` or `cuda:N` (whether that GPU exists is checked when the command runs:
    `require_device`, which also resolves `auto`)."""
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a device (use auto, cpu, cuda or cuda:N)")


def require_device(name: str) -> str:
    """The device `name` stands for (`auto`: the GPU when there is one, else the CPU); a `UsageError` when it
    is not on this machine (parsing alone accepts any device name)."""
    if name == "auto":
        return default_device()
    if name == "cpu":
        return name
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here (use --device cpu)")
    index = int(name[5:]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return name
