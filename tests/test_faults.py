"""Faults, caused for real: runs killed with SIGKILL, second signals during a save, a full disk, two runs in one
folder, and caches truncated or edited behind the code's back. Each must end in one clear line and lose nothing
that was saved.

Training runs here are real processes. They are forked from a server process that imported `miniclip` once
and never ran a tensor op (multiprocessing's "forkserver"), so each starts in milliseconds instead of the
seconds a fresh interpreter needs to import torch, and a SIGKILL kills a whole, separate process.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from miniclip import checkpoint as ckpt
from miniclip import env
from miniclip.checkpoint import CheckpointError, finish_interrupted_save, load_model, load_training_state
from miniclip.cli import main
from miniclip.config import load_config
from miniclip.eval.features import FeatureCache
from miniclip.experiments import store
from miniclip.experiments.registry import ALL_EXPERIMENTS
from miniclip.experiments.runner import run_experiment
from miniclip.model import CLIP
from miniclip.train.lock import LOCK_NAME, RunLock, RunLocked
from miniclip.train.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "configs" / "ci.yaml"
QUIET = ["data.zeroshot=none", "data.val_size=32", "train.val_every=100000", "train.log_every=1"]


def train_argv(out: Path, *overrides: str) -> list[str]:
    sets = [a for o in (*QUIET, *overrides) for a in ("--set", o)]
    return ["train", "--config", str(CI), "--out", str(out), "--no-progress", "--resume", *sets]


# ----------------------------------------------------------------------------- processes to kill


def _child(argv: list[str], kill_at_replace: int | None, marker: str | None):
    """A training run in its own process. With `kill_at_replace = n`, it SIGKILLs itself at its n-th file
    rename (half before the rename, half after), noting the file in `marker` first: a kill inside a
    checkpoint's commit, or inside the run's bookkeeping, at a moment the test chose."""
    if kill_at_replace is not None:
        real_replace, calls = os.replace, [0]

        def replace(src, dst, *args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at_replace and kill_at_replace % 2:
                Path(marker).write_text(f"before {Path(dst).name}")
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst, *args, **kwargs)
            if calls[0] == kill_at_replace:
                Path(marker).write_text(f"after {Path(dst).name}")
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace
    sys.exit(main(argv))


def _forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["miniclip.cli", "miniclip.train.trainer"])
    return ctx


def _logged_step(run: Path) -> int:
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [json.loads(line)["step"] for line in lines if line.endswith("}")]
    return max(steps, default=0)


def test_sigkill_at_random_moments_then_resume_ends_bit_identical(tmp_path):
    """Ten SIGKILLs, five at chosen renames inside saves and five from outside at random moments; each time
    the run is resumed with `--resume`. The final weights and optimizer state equal an uninterrupted run's."""
    # On the CPU: bit-identical needs deterministic kernels. With CUDA present (an H200, 2026-12-04) this test
    # failed; the likely cause, not isolated there, is that cuDNN's autotuner and atomic adds in backward kernels
    # are not deterministic from one process to the next.
    overrides = ("optim.steps=40", "optim.warmup_steps=5", "train.save_every=1", "train.device=cpu")
    ctx = _forkserver()
    straight = ctx.Process(target=_child, args=(train_argv(tmp_path / "straight", *overrides), None, None))
    straight.start()
    straight.join(120)
    assert straight.exitcode == 0

    rng, run, kills, moments = random.Random(17), tmp_path / "killed", 0, []
    marker = tmp_path / "marker"
    while True:
        inside = kills < 10 and kills % 2 == 0
        child = ctx.Process(target=_child, args=(train_argv(run, *overrides), rng.randint(1, 14) if inside else None,
                                                 str(marker)))
        started_at = _logged_step(run)
        child.start()
        if kills < 10 and not inside:  # from outside, at a random moment after the run made progress
            deadline = time.time() + 60
            while _logged_step(run) <= started_at and child.is_alive() and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.4))
            if child.is_alive():
                os.kill(child.pid, signal.SIGKILL)
        child.join(120)
        if child.exitcode == 0:
            break
        assert child.exitcode == -signal.SIGKILL, child.exitcode
        kills += 1
        moments.append(marker.read_text() if inside and marker.exists() else f"outside, near step {_logged_step(run)}")
        marker.unlink(missing_ok=True)
        assert kills <= 12, "the run never finished"
    print("kills:", moments)
    assert kills >= 10
    assert sum(m.split()[-1].startswith(("last.", "final.")) for m in moments if not m.startswith("outside")) >= 3
    for tag in ("final", "last"):
        a, b = load_file(str(tmp_path / "straight" / f"{tag}.safetensors")), load_file(str(run / f"{tag}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), tag
    a, b = load_training_state(tmp_path / "straight" / "last"), load_training_state(run / "last")
    assert_same(a, b)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 41))  # one run: no step twice, no torn line
    assert not list(run.glob("*.next.*")) and not list(run.glob(".*tmp*")) and not (run / LOCK_NAME).exists()


def assert_same(a, b, where="state"):
    """Nested training states equal, tensor for tensor and bit for bit."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def _second_signal_child(argv: list[str]):
    """A run that, at its third save, receives SIGTERM twice before the save writes anything."""
    real_save, saves = ckpt.save_checkpoint, [0]

    def save(*args, **kwargs):
        saves[0] += 1
        if saves[0] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_save(*args, **kwargs)

    ckpt.save_checkpoint = save
    # stderr to a file the test reads: the one line the user would see
    sys.stderr = open(Path(argv[argv.index("--out") + 1]).with_suffix(".err"), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), 2)
    sys.exit(main(argv))


def test_a_second_signal_during_a_save_lets_it_finish_then_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    child = _forkserver().Process(target=_second_signal_child,
                                  args=(train_argv(run, "optim.steps=50", "train.save_every=1"),))
    child.start()
    child.join(120)
    err = run.with_suffix(".err").read_text()
    assert child.exitcode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "interrupted by SIGTERM" in err
    meta = json.loads((run / "last.json").read_text())
    assert meta["step"] == 3  # the save under way finished; the loop stopped after it
    load_model(run / "last"), load_training_state(run / "last")
    assert json.loads((run / "provenance.json").read_text())["status"] == "interrupted by SIGTERM"


def test_a_second_signal_outside_a_save_stops_at_once_in_one_line(tmp_path, capsys):
    trainer = Trainer(load_config(CI, [*QUIET, "optim.steps=6", "train.save_every=2"]), tmp_path, progress=False)
    real_step, steps = trainer.train_step, [0]

    def step(*args):
        steps[0] += 1
        if steps[0] == 3:  # just after the step-2 save
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(*args)

    trainer.train_step = step
    from miniclip.train.trainer import StoppedAtOnce
    with pytest.raises(StoppedAtOnce):
        trainer.run()
    assert json.loads((tmp_path / "last.json").read_text())["step"] == 2
    assert json.loads((tmp_path / "provenance.json").read_text())["status"] == "stopped at once by a second signal"
    assert not (tmp_path / LOCK_NAME).exists()


# ----------------------------------------------------------------------------- a full disk


def test_a_full_disk_stops_the_run_in_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    real_save_file, calls = ckpt.save_file, [0]

    def save_file(tensors, path, metadata=None):
        calls[0] += 1
        if calls[0] > 2:  # the step-2 checkpoint (weights, state) is written; the step-4 one finds the disk full
            Path(path).write_bytes(b"\0" * 100)  # what a writer leaves when it runs out of space
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real_save_file(tensors, path, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", save_file)
    code = main(train_argv(tmp_path, "optim.steps=8", "train.save_every=2"))
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "intact" in lines[0], err
    assert "Traceback" not in err
    assert json.loads((tmp_path / "last.json").read_text())["step"] == 2
    load_model(tmp_path / "last"), load_training_state(tmp_path / "last")  # whole, and passes its hash check
    assert not list(tmp_path.glob("*.next.*"))
    assert json.loads((tmp_path / "provenance.json").read_text())["status"] == "failed to write"
    monkeypatch.undo()  # with space again, the run resumes from step 2 and finishes
    assert main(train_argv(tmp_path, "optim.steps=8", "train.save_every=2")) == 0
    assert json.loads((tmp_path / "final.json").read_text())["step"] == 8


# ----------------------------------------------------------------------------- checkpoints that went bad


SHORT = ("optim.steps=2", "optim.warmup_steps=1", "train.save_every=1")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    Trainer(load_config(CI, [*QUIET, *SHORT]), run, progress=False).run()
    return run


@pytest.mark.parametrize("name, damage", [("last.safetensors", "truncate"), ("last.safetensors", "flip a bit"),
                                          ("last.state.safetensors", "truncate"), ("last.state.json", "edit"),
                                          ("last.state.safetensors", "delete")])
def test_a_damaged_checkpoint_is_refused_in_one_line(finished_run, tmp_path, name, damage, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    path = run / name
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip a bit":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "edit":
        path.write_text(path.read_text().replace('"bad_steps": 0', '"bad_steps": 9'))
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match="damaged|missing"):
        load_model(run / "last") if name == "last.safetensors" else load_training_state(run / "last")
    # What a user sees: evaluating the weights, or resuming from the state, is one line and exit status 2.
    argv = (["eval", "zeroshot", "--checkpoint", str(path), "--data", "shapes:8"] if name == "last.safetensors"
            else train_argv(run, *SHORT))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and str(path) in err and "Traceback" not in err, err


def test_an_interrupted_commit_is_finished_and_a_half_staged_one_is_ignored(tmp_path):
    model = CLIP(load_config(CI).model)
    ckpt.save_checkpoint(tmp_path, "last", model, step=1, run_config={}, training_state={"bad_steps": 0})
    with torch.no_grad():
        model.logit_scale.fill_(1.0)
    # A save at step 2 killed after its journal was written and one file renamed: finishing it gives step 2.
    ckpt.save_checkpoint(tmp_path / "b", "last", model, step=2, run_config={}, training_state={"bad_steps": 0})
    for name in ("last.safetensors", "last.state.safetensors", "last.state.json", "last.json"):
        staged = name.replace("last.", "last.next.", 1)
        os.replace(tmp_path / "b" / name, tmp_path / staged)
    os.replace(tmp_path / "last.next.safetensors", tmp_path / "last.safetensors")
    with pytest.raises(CheckpointError, match="damaged"):  # until the commit is finished, the mix is refused
        load_model(tmp_path / "last")
    assert finish_interrupted_save(tmp_path, "last") and not finish_interrupted_save(tmp_path, "last")
    assert load_training_state(tmp_path / "last")["step"] == 2 and load_model(tmp_path / "last").logit_scale == 1.0
    # A save killed before its journal: the staged files are ignored and the old checkpoint stands.
    (tmp_path / "last.next.safetensors").write_bytes(b"half a file")
    assert not finish_interrupted_save(tmp_path, "last")
    assert load_training_state(tmp_path / "last")["step"] == 2


# ----------------------------------------------------------------------------- one run per folder


def test_a_second_run_in_the_same_folder_is_refused_naming_the_first(tmp_path, capsys):
    first = Trainer(load_config(CI, [*QUIET, "optim.steps=2", "optim.warmup_steps=1"]), tmp_path, progress=False)
    assert main(train_argv(tmp_path, "optim.steps=2", "optim.warmup_steps=1")) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and f"pid {os.getpid()}" in err and "in use by another run" in err
    assert "Traceback" not in err
    first.run()  # the first run was not disturbed, and releases the folder when it ends
    assert not (tmp_path / LOCK_NAME).exists()
    assert main(train_argv(tmp_path, "optim.steps=2", "optim.warmup_steps=1")) == 0


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    ctx = multiprocessing.get_context("fork")
    holder = ctx.Process(target=_hold_lock_then_die, args=(str(tmp_path),))
    holder.start()
    holder.join(30)
    assert holder.exitcode == -signal.SIGKILL and (tmp_path / LOCK_NAME).exists()
    lock = RunLock(tmp_path).acquire()  # the holder is dead: its lock is stale
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    with pytest.raises(RunLocked):
        RunLock(tmp_path).acquire()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def _hold_lock_then_die(directory: str):
    RunLock(directory).acquire()
    os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- caches that went bad


def test_a_damaged_feature_cache_is_reported_and_recomputed(tmp_path, capsys):
    cache, key, calls = FeatureCache(tmp_path), {"name": "toy", "images": 4}, []

    def compute():
        calls.append(1)
        return {"features": torch.arange(12.0).reshape(4, 3)}

    cache.get_or_compute(key, compute)
    path = cache.path(key)
    data = bytearray(path.read_bytes())
    data[-4] ^= 0x40  # one bit of one feature
    path.write_bytes(bytes(data))
    out = cache.get_or_compute(key, compute)
    assert torch.equal(out["features"], torch.arange(12.0).reshape(4, 3)) and len(calls) == 2
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "damaged" in err and str(path) in err
    path.write_bytes(path.read_bytes()[:50])  # truncated
    cache.get_or_compute(key, compute)
    assert len(calls) == 3 and capsys.readouterr().err.count("warning:") == 1
    assert cache.get_or_compute(key, compute) and len(calls) == 3 and cache.hits == 1  # whole again: used


def test_a_damaged_experiment_result_is_reported_and_recomputed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(env, "ROOT", tmp_path)  # runs_dir() is ROOT/runs/<profile>
    calls = []
    monkeypatch.setitem(ALL_EXPERIMENTS, "fake", lambda settings, profile: calls.append(1) or {"accuracy": 0.5})
    first = run_experiment("fake", "ci", settings={"x": 1}, verbose=False)
    path = store.results_path("fake", "ci")
    assert path.is_relative_to(tmp_path) and store.load_cached("fake", "ci") is not None
    record = json.loads(path.read_text())
    record["result"]["accuracy"] = 0.9  # a hand edit that keeps the JSON valid
    path.write_text(json.dumps(record))
    assert store.load_cached("fake", "ci") is None
    assert capsys.readouterr().err.count("warning:") == 1
    again = run_experiment("fake", "ci", settings={"x": 1}, verbose=False)
    assert again["cached"] is False and again["result"] == first["result"] and len(calls) == 2
    path.write_text(path.read_text()[:-40])  # truncated
    assert store.load_cached("fake", "ci") is None and "not valid JSON" in capsys.readouterr().err
    # The pieces of a sweep are sealed the same way.
    part = store.work_dir("toy", "ci") / "parts" / "a.json"
    assert store.cached_part("toy", "a", "ci", {"k": 1}, lambda: {"v": 1}) == {"v": 1}
    part.write_text(part.read_text().replace('"v": 1', '"v": 2'))
    assert store.cached_part("toy", "a", "ci", {"k": 1}, lambda: {"v": 3}) == {"v": 3}
