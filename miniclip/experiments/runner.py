"""Running experiments once: configs per profile, cached JSON results with provenance, the command line.

An experiment is a function `run(settings, profile) -> dict`. Its settings come from
`configs/experiments/<profile>.yaml` (one section per experiment); the models it trains derive from the
profile's base training configs (`configs/cpu-shapes.yaml`, `configs/cpu-flickr8k.yaml`) through `--set`-style
overrides, so a change to a base model flows into every experiment built on it.

`run_experiment` writes `runs/<profile>/experiments/<name>.json`: the result plus its provenance (settings,
git commit, machine, torch version, wall time, seed). A JSON whose settings (and base configs) equal the
current ones is returned as it is, without rerunning anything, like `make train --if-changed`. Experiments
made of several trainings also cache each one as it finishes (`cached_part`), so an interrupted
`make experiments` picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from miniclip.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS_DIR = ROOT / "configs" / "experiments"


def experiment_settings(profile: str) -> dict:
    """The per-experiment settings of a profile, from configs/experiments/<profile>.yaml."""
    path = SETTINGS_DIR / f"{profile}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no experiment settings for profile {profile!r}: {path} does not exist")
    return yaml.safe_load(path.read_text()) or {}


def derived_config(base: str, overrides: dict | list | None = None, *, name: str | None = None,
                   profile: str | None = None) -> Config:
    """A training config: the base YAML (relative to the repository root) with `section.key: value` overrides.

    Overrides are a mapping (as the experiment YAML writes them) or a list of `key=value` strings; they go
    through the same parser and checks as `python -m miniclip train --set`."""
    if isinstance(overrides, dict):
        overrides = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]  # JSON is valid YAML
    overrides = list(overrides or [])
    if name is not None:
        overrides.append(f"name={name}")
    if profile is not None:
        overrides.append(f"profile={profile}")
    return load_config(ROOT / base, overrides)


def results_path(name: str, profile: str) -> Path:
    from miniclip.book import runs_dir

    return runs_dir(profile) / "experiments" / f"{name}.json"


def work_dir(name: str, profile: str) -> Path:
    """Where an experiment keeps the checkpoints it trains (e.g. the ViTs other chapters load)."""
    from miniclip.book import runs_dir

    return runs_dir(profile) / "experiments" / name


def cached_part(experiment: str, part: str, profile: str, key: dict, compute) -> dict:
    """One independent piece of an experiment (one model of a sweep), cached on its own in
    runs/<profile>/experiments/<experiment>/parts/<part>.json, so that an experiment stopped halfway resumes
    from the pieces it finished. `key` (the piece's training config and any other input) must match for the
    saved piece to be reused. Delete the folder to recompute every piece."""
    path = work_dir(experiment, profile) / "parts" / f"{part}.json"
    key = _plain(key)
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError:
            saved = {}
        if saved.get("key") == key:
            return saved["result"]
    t0 = time.time()
    result = _plain(compute())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"key": key, "result": result, "wall_s": time.time() - t0}, indent=2))
    tmp.replace(path)
    return result


def _plain(x):
    """Settings as JSON stores them (tuples become lists), so a cached copy compares equal."""
    return json.loads(json.dumps(x))


def provenance(settings: dict, wall_s: float, load_before: list[float] | None = None) -> dict:
    """The same facts `Trainer` writes into provenance.json: what ran, from which commit, where, how long;
    and the machine's load average before and after, since on a shared machine wall times (and every
    throughput figure) depend on what else was running."""
    import os
    import platform

    import torch

    from miniclip.train import _git_commit, _machine

    return {**cache_key(settings), "git_commit": _git_commit(), "machine": _machine(),
            "torch": torch.__version__, "python": platform.python_version(), "seed": settings.get("seed", 0),
            "wall_s": wall_s, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
            "load_average_before": load_before, "load_average_after": list(os.getloadavg())}


def base_configs(settings) -> dict:
    """Every base training config the settings name (any `base:` key, at any depth), as its YAML content.
    They are part of what a cached result depends on: editing configs/cpu-shapes.yaml makes every
    experiment built on it stale, though its own settings did not change."""
    found = {}
    if isinstance(settings, dict):
        for key, value in settings.items():
            if key == "base" and isinstance(value, str):
                path = ROOT / value
                found[value] = yaml.safe_load(path.read_text()) if path.exists() else None
            else:
                found.update(base_configs(value))
    return found


def cache_key(settings: dict) -> dict:
    return _plain({"settings": settings, "base_configs": base_configs(settings)})


def load_cached(name: str, profile: str, settings: dict | None = None) -> dict | None:
    """The cached result of `name`, or None when there is none (or, given `settings`, when they or the base
    configs they name differ from the ones it was computed with)."""
    path = results_path(name, profile)
    if not path.exists():
        return None
    try:
        cached = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a half-written or damaged file is recomputed, never trusted
    prov = cached.get("provenance", {})
    if settings is not None and {k: prov.get(k) for k in ("settings", "base_configs")} != cache_key(settings):
        return None
    return cached


def run_experiment(name: str, profile: str | None = None, *, force: bool = False, settings: dict | None = None,
                   verbose: bool = True) -> dict:
    """Run one experiment (or return its cached result) and return `{"result": …, "provenance": …}`."""
    from miniclip.book import profile as active_profile
    from miniclip.experiments import EXPERIMENTS

    profile = profile or active_profile()
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    if settings is None:
        all_settings = experiment_settings(profile)
        if name not in all_settings:
            raise KeyError(f"configs/experiments/{profile}.yaml has no section for experiment {name!r}")
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
    result = EXPERIMENTS[name](settings, profile)
    record = {"experiment": name, "profile": profile, "result": _plain(result),
              "provenance": provenance(settings, time.time() - t0, load_before)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)  # atomic: a killed run never leaves a half-written result that looks finished
    if verbose:
        print(f"{name}: done in {record['provenance']['wall_s']:.0f} s -> {path}", file=sys.stderr)
    record["cached"] = False
    return record


# ----------------------------------------------------------------------------- command line


def _run_command(args: argparse.Namespace) -> int:
    from miniclip.experiments import EXPERIMENTS

    names = args.names or list(EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        print(f"error: unknown experiment {unknown[0]!r}; choose from {', '.join(EXPERIMENTS)}", file=sys.stderr)
        return 2
    summary = {}
    for name in names:
        record = run_experiment(name, args.profile, force=args.force)
        summary[name] = {"path": str(results_path(name, record["profile"])), "cached": record["cached"],
                         "wall_s": record["provenance"]["wall_s"]}
    if args.json:
        print(json.dumps(summary))
    return 0


def add_experiment_commands(subparsers) -> None:
    """`experiments [NAME …] [--profile P] [--force] [--json]` on a parent parser's subcommands."""
    _add_arguments(subparsers.add_parser("experiments", help="the paper's experiments at small scale, cached "
                                         "under runs/<profile>/experiments/"))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from miniclip.experiments import EXPERIMENTS

    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"which to run (default: all): {', '.join(EXPERIMENTS)}")
    parser.add_argument("--profile", choices=["ci", "cpu", "gpu-1m"], help="default: $MINICLIP_PROFILE or cpu")
    parser.add_argument("--force", action="store_true", help="rerun even when a cached result has these settings")
    parser.add_argument("--json", action="store_true", help="print a summary as JSON on the last line")
    parser.set_defaults(func=_run_command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniclip.experiments", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return args.func(args)
