"""Running an experiment once: `run_experiment(name)` returns its cached result or computes and stores it.

`make experiments` runs every experiment of `registry.EXPERIMENTS` in order (`python -m miniclip experiments`;
the opt-in `OPTIONAL_EXPERIMENTS` run only by name);
the book reads the results through `miniclip.book.experiment`.
"""

from __future__ import annotations

import os
import sys
import time

from miniclip.env import profile as active_profile
from miniclip.errors import UserError
from miniclip.experiments.registry import ALL_EXPERIMENTS
from miniclip.experiments.store import (
    experiment_settings,
    experiments_profile,
    load_cached,
    plain,
    provenance,
    results_path,
    write_sealed,
)


class UnknownExperiment(UserError, KeyError):
    """An experiment name that is not in the registry, or has no settings in the profile's YAML."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else ""


def run_experiment(name: str, profile: str | None = None, *, force: bool = False, settings: dict | None = None,
                   verbose: bool = True) -> dict:
    """Run one experiment (or return its cached result) and return `{"result": …, "provenance": …}`."""
    profile = experiments_profile(profile or active_profile())
    if name not in ALL_EXPERIMENTS:
        raise UnknownExperiment(f"unknown experiment {name!r}; choose from {', '.join(ALL_EXPERIMENTS)}")
    if settings is None:
        all_settings = experiment_settings(profile)
        if name not in all_settings:
            raise UnknownExperiment(f"configs/experiments/{profile}.yaml has no section for experiment {name!r}")
        settings = all_settings[name]
    path = results_path(name, profile)
    cached = None if force else load_cached(name, profile, settings)
    if cached is not None:
        if verbose:
            print(f"{name}: {path} is up to date with its settings; not rerunning", file=sys.stderr)
        cached["cached"] = True
        return cached
    if verbose:
        print(f"{name}: running ({profile} profile)", file=sys.stderr)
    t0, load_before = time.time(), list(os.getloadavg())
    result = ALL_EXPERIMENTS[name](settings, profile)
    record = {"experiment": name, "profile": profile, "result": plain(result),
              "provenance": provenance(settings, time.time() - t0, load_before)}
    write_sealed(path, record)
    if verbose:
        print(f"{name}: done in {record['provenance']['wall_s']:.0f} s -> {path}", file=sys.stderr)
    record["cached"] = False
    return record
