"""The trainer's promises: GradCache = full batch, DDP = single process, exact resume, clean stops, NaN guard."""

import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from miniclip.config import load_config
from miniclip.data.loaders import train_batches
from miniclip.tokenizer import tokenize
from miniclip.train.trainer import Trainer, TrainingDiverged, learning_rate, param_groups

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "configs" / "ci.yaml"


def ci_config(*overrides):
    return load_config(CI, ["data.zeroshot=none", "data.val_size=32", *overrides])


def weights(run_dir, tag="last"):
    return load_file(str(Path(run_dir) / f"{tag}.safetensors"))


def test_weight_decay_skips_gains_biases_embeddings_and_temperature(tmp_path):
    trainer = Trainer(ci_config(), tmp_path, progress=False)
    decay, no_decay = param_groups(trainer.model, 0.2)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in decayed and "text_projection" in decayed
    assert "visual.conv1.weight" in decayed
    for name in ("logit_scale", "token_embedding.weight", "positional_embedding", "visual.class_embedding",
                 "visual.positional_embedding", "ln_final.weight", "transformer.resblocks.0.mlp.c_fc.bias"):
        assert name not in decayed, name
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0


def test_learning_rate_warms_up_linearly_then_decays_by_cosine():
    optim = ci_config("optim.lr=1.0", "optim.warmup_steps=4", "optim.steps=12").optim
    lrs = [learning_rate(s, optim) for s in range(12)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == 1.0 and math.isclose(lrs[8], 0.5) and lrs[11] < 0.05
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))


def test_grad_cache_chunks_give_the_full_batch_gradients(tmp_path):
    # On the CPU wherever the test runs: a GPU's TF32 convolutions would differ by more than the tolerance
    # between a batch and its chunks.
    full = Trainer(ci_config("train.device=cpu"), tmp_path / "a", progress=False)
    chunked = Trainer(ci_config("optim.grad_cache_chunks=4", "train.device=cpu"), tmp_path / "b", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(full.model.parameters(), chunked.model.parameters()))
    images, captions = next(train_batches(full.config))
    tokens = tokenize(captions)
    loss_full = full.train_step(images, tokens)
    loss_chunked = chunked.train_step(images, tokens)
    assert torch.allclose(loss_full, loss_chunked, atol=1e-6)
    worst = 0.0
    for (name, a), b in zip(full.model.named_parameters(), chunked.model.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-5, msg=name)
        worst = max(worst, (a.grad - b.grad).abs().max().item())
    print(f"GradCache max grad difference: {worst:.2e}")


def test_a_shapes_curriculum_given_as_a_fraction_lasts_that_part_of_the_run():
    from itertools import islice

    from miniclip.data.loaders import shapes_config
    from miniclip.data.shapes import ShapesWorld

    shapes = '{image_size: 32, curriculum: {fraction: 0.5, max_objects: 1, grammar: {p_colour: 0}}}'
    config = ci_config("optim.steps=4", "optim.warmup_steps=1", "optim.batch_size=8", f"data.shapes={shapes}")
    world = shapes_config(config.data.shapes, 32, config.train.seed)
    early, late = ShapesWorld(world.curriculum_worlds()[0]), ShapesWorld(world)
    batches = list(islice(train_batches(config), 4))
    # Steps 0-1 (half of 4) come from the first phase, steps 2-3 from the world as configured.
    assert [b[1] for b in batches[:2]] == [early.render(range(i, i + 8)).captions for i in (0, 8)]
    assert [b[1] for b in batches[2:]] == [late.render(range(i, i + 8)).captions for i in (16, 24)]


def test_init_from_starts_a_run_from_a_checkpoints_weights(tmp_path):
    from miniclip.checkpoint import CheckpointError

    Trainer(ci_config("optim.steps=2", "optim.warmup_steps=1"), tmp_path / "first", progress=False).run()
    start = weights(tmp_path / "first", "final")
    tuned = Trainer(ci_config(f"train.init_from={tmp_path / 'first' / 'final'}", "train.seed=7"),
                    tmp_path / "tuned", progress=False)
    state = tuned.model.state_dict()
    assert all(torch.equal(state[k].cpu(), v) for k, v in start.items())
    fresh = Trainer(ci_config("train.seed=7"), tmp_path / "fresh", progress=False).model.state_dict()
    assert not torch.equal(fresh["text_projection"].cpu(), start["text_projection"])
    with pytest.raises(CheckpointError, match="another architecture"):
        Trainer(ci_config(f"train.init_from={tmp_path / 'first' / 'final'}", "model.text_layers=1"),
                tmp_path / "other", progress=False)


def test_resume_after_a_crash_is_bit_exact(tmp_path):
    overrides = ["optim.steps=9", "train.save_every=4", "train.val_every=100"]
    Trainer(ci_config(*overrides), tmp_path / "straight", progress=False).run()
    # A run "killed" at step 6: its last checkpoint is from step 4, steps 5-6 are lost and redone.
    first = Trainer(ci_config(*overrides), tmp_path / "resumed", progress=False)
    assert first.run(max_steps=6) == {"status": "stopped", "step": 6}
    resumed = Trainer(ci_config(*overrides), tmp_path / "resumed", resume=True, progress=False)
    assert resumed.step == 4
    resumed.run()
    a, b = weights(tmp_path / "straight", "final"), weights(tmp_path / "resumed", "final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_changed_config(tmp_path):
    Trainer(ci_config("optim.steps=2", "optim.warmup_steps=1"), tmp_path, progress=False).run()
    with pytest.raises(Exception, match="config changed"):
        Trainer(ci_config("optim.steps=3", "optim.warmup_steps=1"), tmp_path, resume=True, progress=False)


def test_a_run_saved_before_an_option_existed_is_still_up_to_date(tmp_path):
    from miniclip.train.runs import train_if_changed

    config = ci_config("optim.steps=2", "optim.warmup_steps=1")
    assert train_if_changed(config, tmp_path, progress=False)["status"] != "up to date"
    for tag in ("final", "last"):  # as checkpoints written before data.train_images was added
        meta = json.loads((tmp_path / f"{tag}.json").read_text())
        del meta["config"]["data"]["train_images"]
        (tmp_path / f"{tag}.json").write_text(json.dumps(meta))
    assert train_if_changed(config, tmp_path, progress=False)["status"] == "up to date"
    assert Trainer(config, tmp_path, resume=True, progress=False).step == 2  # and resumable
    meta = json.loads((tmp_path / "final.json").read_text())
    meta["config"]["data"]["no_such_option"] = 1  # a key this version does not know: not up to date
    (tmp_path / "final.json").write_text(json.dumps(meta))
    assert train_if_changed(config, tmp_path, progress=False)["status"] != "up to date"


def test_non_finite_losses_are_skipped_counted_and_stop_the_run(tmp_path):
    trainer = Trainer(ci_config("optim.steps=10", "train.max_bad_steps=3"), tmp_path, progress=False)
    real_loss = trainer._loss
    calls = {"n": 0}

    def sometimes_nan(*args):
        calls["n"] += 1
        loss = real_loss(*args)
        return loss * float("nan") if calls["n"] == 2 or calls["n"] >= 4 else loss

    trainer._loss = sometimes_nan
    with pytest.raises(TrainingDiverged, match="3 non-finite losses in a row"):
        trainer.run()
    assert trainer.bad_steps == 4  # step 2, then steps 4, 5, 6
    state = json.loads((tmp_path / "last.json").read_text())
    assert state["step"] == 6
    assert json.loads((tmp_path / "provenance.json").read_text())["status"] == "diverged"
    for name, p in trainer.model.named_parameters():  # skipped steps left the weights finite
        assert torch.isfinite(p).all(), name


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_and_exits_cleanly(tmp_path, sig):
    cmd = [sys.executable, "-m", "miniclip", "train", "--config", str(CI), "--out", str(tmp_path),
           "--set", "optim.steps=100000", "--set", "train.log_every=1", "--set", "data.zeroshot=none",
           "--set", "train.val_every=100000", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "metrics.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig.value, err
    assert f"interrupted by {sig.name}" in err and "--resume" in err
    assert "Traceback" not in err
    saved = json.loads((tmp_path / "last.json").read_text())["step"]
    assert saved >= 1 and not (tmp_path / "final.json").exists()
    assert json.loads((tmp_path / "provenance.json").read_text())["status"] == f"interrupted by {sig.name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(target, *args):
    """`target(rank, 2, port, *args)` in two spawned processes (gloo on the CPU); both must succeed."""
    ctx = torch.multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=target, args=(r, 2, port, *args)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
        if p.is_alive():
            p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


def _run_one_step(out, overrides, rank=0):
    trainer = Trainer(ci_config(*overrides), out, progress=False)
    trainer.run()
    if rank == 0:  # the gradients of the step just taken are still in .grad
        save_file({n: p.grad.contiguous() for n, p in trainer.model.named_parameters()}, str(Path(out) / "grads.st"))


def _ddp_worker(rank: int, world: int, port: int, out: str, overrides: list[str]):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
    torch.set_num_threads(1)
    _run_one_step(out, overrides, rank)


@pytest.mark.parametrize("chunks", [1, 2])
def test_one_ddp_step_equals_one_single_process_step(tmp_path, chunks):
    # Adam's first update is g / (|g| + eps): with the default eps of 1e-6, float noise in a near-zero gradient
    # becomes a full-size difference in the weights. A larger eps keeps the weight comparison well-posed; the
    # gradients are compared directly as well.
    # Both runs on the CPU (gloo) whatever GPUs the machine has: a 1-GPU machine has no GPU for rank 1.
    overrides = ["optim.steps=1", "optim.warmup_steps=1", "optim.batch_size=16", "optim.eps=1e-3",
                 f"optim.grad_cache_chunks={chunks}", "train.device=cpu"]
    _run_two_ranks(_ddp_worker, str(tmp_path / "ddp"), overrides)
    _run_one_step(tmp_path / "single", overrides)
    for kind, a, b in (("gradient", load_file(str(tmp_path / "ddp" / "grads.st")),
                        load_file(str(tmp_path / "single" / "grads.st"))),
                       ("weight", weights(tmp_path / "ddp"), weights(tmp_path / "single"))):
        assert a.keys() == b.keys()
        largest = max((a[k] - b[k]).abs().max().item() for k in a)
        print(f"DDP vs single process, largest {kind} difference: {largest:.2e}")
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=f"{kind} of {k}")


def _ddp_shard_worker(rank: int, world: int, port: int, out: str, overrides: list[str], steps: int | None):
    """One rank of a DDP run on shards that records the captions of every batch it trains on, then stops after
    `steps` steps (a crash) or, with `steps=None`, resumes the run from its last checkpoint to the end."""
    import miniclip.train.trainer as trainer_module

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
    torch.set_num_threads(1)
    seen = Path(out) / f"captions-rank{rank}.jsonl"
    real_batches = trainer_module.train_batches

    def recording(config, start_step=0, *args, **kwargs):
        for step, (images, captions) in enumerate(real_batches(config, start_step, *args, **kwargs), start_step):
            with open(seen, "a") as f:
                f.write(json.dumps({"step": step, "captions": captions}) + "\n")
            yield images, captions

    trainer_module.train_batches = recording
    Trainer(ci_config(*overrides), out, resume=steps is None, progress=False).run(max_steps=steps)


def test_ddp_on_shards_gives_each_rank_its_own_samples_and_resumes(tmp_path):
    from miniclip.data.shards import write_shards

    rng = np.random.default_rng(0)

    def jpeg(i):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(buffer, "JPEG")
        return buffer.getvalue()

    write_shards(((jpeg(i), f"picture number {i}") for i in range(24)), tmp_path / "shards", shard_size=6)
    overrides = [f"data.dataset=shards:{tmp_path / 'shards'}", "optim.batch_size=8", "optim.steps=3",
                 "optim.warmup_steps=1", "train.save_every=1", "train.val_every=100", "train.device=cpu"]
    for steps in (2, None):  # two steps and a "crash", then a resume to the end, both with two ranks
        _run_two_ranks(_ddp_shard_worker, str(tmp_path / "run"), overrides, steps)
    assert json.loads((tmp_path / "run" / "final.json").read_text())["step"] == 3
    batches = [[json.loads(line) for line in (tmp_path / "run" / f"captions-rank{r}.jsonl").read_text().splitlines()]
               for r in range(2)]
    for rank_batches in batches:
        # Each rank trains on its half of the global batch, and the resumed run takes up at step 2.
        assert [b["step"] for b in rank_batches][:2] == [0, 1] and rank_batches[-1]["step"] >= 2
        assert all(len(b["captions"]) == 4 for b in rank_batches)
    for first, second in zip(batches[0][:3], batches[1][:3]):
        assert first["captions"] != second["captions"]  # the ranks draw their own shards, not the same samples


def test_tensorboard_receives_the_same_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(ci_config("optim.steps=4", "optim.warmup_steps=1", "train.log_every=2", "train.val_every=4",
                      "train.tensorboard=true"), tmp_path, progress=False).run()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "val/val_loss"} <= set(events.Tags()["scalars"])
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logged if "loss" in r]
    assert [round(e.value, 5) for e in events.Scalars("train/loss")] == [round(v, 5) for v in losses]


def test_a_batch_that_does_not_split_over_the_ranks_is_a_config_error(tmp_path, monkeypatch):
    from miniclip.config import ConfigError
    from miniclip.distributed import DistInfo

    # Three ranks cannot share a batch of 16 equally; the check comes before any process group is used.
    monkeypatch.setattr("miniclip.train.trainer.setup_distributed",
                        lambda **_: DistInfo(rank=0, local_rank=0, world_size=3, device=torch.device("cpu")))
    with pytest.raises(ConfigError, match="optim.batch_size=16 does not split evenly over 3 processes"):
        Trainer(ci_config("optim.batch_size=16"), tmp_path, progress=False)


def test_a_bad_shapes_option_is_a_one_line_config_error():
    from miniclip.config import ConfigError

    with pytest.raises(ConfigError, match=r"data\.shapes: curriculum: fraction must lie in"):
        next(train_batches(ci_config("data.shapes={curriculum: {fraction: 2}}")))


@pytest.mark.parametrize("chunks", [1, 2])
def test_train_step_hands_the_model_its_batch_on_the_models_device(tmp_path, chunks):
    # A batch built on the CPU (an experiment's fixed batch, a test's) must reach a model on a GPU there.
    # No GPU here, so the trainer is told its model lives on the `meta` device and a hook on the towers
    # records where each input arrives, then stops the step: the move, not the arithmetic, is under test.
    from miniclip.tokenizer import tokenize

    trainer = Trainer(ci_config(f"optim.grad_cache_chunks={chunks}"), tmp_path, progress=False)
    trainer.device = torch.device("meta")
    arrived = []

    class Arrived(Exception):
        pass

    def record(module, inputs):
        arrived.append({x.device.type for x in inputs})
        raise Arrived

    trainer.towers.register_forward_pre_hook(record)
    size, context = trainer.config.model.image_size, trainer.config.model.context_length
    with pytest.raises(Arrived):
        trainer.train_step(torch.zeros(4, 3, size, size), tokenize(["a red star"] * 4, context))
    assert arrived == [{"meta"}]


def test_a_weight_average_is_validated_published_and_resumed_bit_exactly(tmp_path):
    from miniclip.train.ema import ema_decay_at

    # On the CPU: the weights are compared with tensors read back on the CPU, and bit-exact resume needs
    # deterministic kernels (test_faults' SIGKILL test says why CUDA's are not).
    overrides = ["optim.steps=7", "train.save_every=3", "train.val_every=100", "train.ema_decay=0.9",
                 "train.device=cpu"]
    straight = Trainer(ci_config(*overrides), tmp_path / "straight", progress=False)
    start = {k: v.clone() for k, v in straight.model.state_dict().items()}
    seen = []  # the live weights after each optimizer step, to average by hand
    real_step = straight.optimizer_step

    def recording_step(loss):
        took = real_step(loss)
        seen.append({k: v.clone() for k, v in straight.model.state_dict().items()})
        return took

    straight.optimizer_step = recording_step
    straight.run()
    expected = dict(start)
    for n, live in enumerate(seen):
        d = ema_decay_at(0.9, n)
        expected = {k: d * expected[k] + (1 - d) * live[k] if live[k].is_floating_point() else live[k]
                    for k in live}
    final, last = weights(tmp_path / "straight", "final"), weights(tmp_path / "straight", "last")
    key = "text_projection"
    assert torch.allclose(final[key], expected[key], atol=1e-6)
    assert not torch.allclose(final[key], last[key])  # last.* keeps the live weights for resuming
    assert torch.equal(last[key], seen[-1][key].cpu())
    # A run killed at step 5 resumes from step 3 with its average and ends where the straight one did.
    first = Trainer(ci_config(*overrides), tmp_path / "resumed", progress=False)
    first.run(max_steps=5)
    Trainer(ci_config(*overrides), tmp_path / "resumed", resume=True, progress=False).run()
    resumed = weights(tmp_path / "resumed", "final")
    assert all(torch.equal(final[k], resumed[k]) for k in final)


def test_a_bad_weight_average_or_smoothing_is_a_config_error():
    for override, key in (("train.ema_decay=1.0", "train.ema_decay"), ("optim.label_smoothing=-0.1",
                                                                       "optim.label_smoothing")):
        with pytest.raises(Exception, match=key):
            ci_config(override)


def test_the_image_ssl_loss_trains_its_head_on_two_views_and_resumes_bit_exactly(tmp_path):
    from miniclip.data.shards import write_shards
    from miniclip.data.transforms import TwoViews, train_transform

    rng = np.random.default_rng(0)

    def jpeg():
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(buffer, "JPEG")
        return buffer.getvalue()

    picture = Image.open(io.BytesIO(jpeg()))
    views = TwoViews(train_transform(32))(picture)
    assert views.shape == (2, 3, 32, 32) and not torch.equal(views[0], views[1])  # two draws of the crop

    write_shards(((jpeg(), f"picture number {i}") for i in range(16)), tmp_path / "shards", shard_size=8)
    overrides = [f"data.dataset=shards:{tmp_path / 'shards'}", "optim.batch_size=8", "optim.steps=4",
                 "optim.warmup_steps=1", "optim.ssl_weight=0.5", "train.save_every=2", "train.val_every=100",
                 "train.log_every=1", "train.device=cpu", "data.zeroshot=none"]
    straight = Trainer(ci_config(*overrides), tmp_path / "straight", progress=False)
    head_before = [p.detach().clone() for p in straight.ssl_head.parameters()]
    seen = []
    real_loss = straight._loss

    def recording_loss(image_features, text_features, logit_scale, ssl=None):
        seen.append((image_features.shape[0], text_features.shape[0], None if ssl is None else ssl.shape[0]))
        return real_loss(image_features, text_features, logit_scale, ssl)

    straight._loss = recording_loss
    straight.run()
    assert seen and all(images == 2 * texts == ssl for images, texts, ssl in seen)  # two views per caption
    assert any(not torch.equal(a, b) for a, b in zip(head_before, straight.ssl_head.parameters()))
    logged = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in logged if "ssl_loss" in r)
    assert step["loss"] == pytest.approx(step["clip_loss"] + 0.5 * step["ssl_loss"], rel=1e-5)
    # A run stopped after its step-2 checkpoint resumes with the head it had and the optimizer's state for it.
    first = Trainer(ci_config(*overrides), tmp_path / "resumed", progress=False)
    first.run(max_steps=2)
    resumed = Trainer(ci_config(*overrides), tmp_path / "resumed", resume=True, progress=False)
    assert resumed.step == 2
    assert all(torch.equal(a, b) for a, b in zip(first.ssl_head.parameters(), resumed.ssl_head.parameters()))
    head_state = [resumed.optimizer.state[p]["exp_avg"] for p in resumed.ssl_head.parameters()]
    assert all(torch.equal(a, first.optimizer.state[p]["exp_avg"])
               for a, p in zip(head_state, first.ssl_head.parameters()))
    resumed.run()


def test_the_image_ssl_loss_needs_real_photos():
    with pytest.raises(Exception, match="optim.ssl_weight"):
        ci_config("optim.ssl_weight=1.0")  # the ci config trains on Shapes


def test_validation_leaves_the_weights_alone(tmp_path):
    """The zero-shot check and how often it runs are monitoring: a run validated (with the Shapes zero-shot check)
    after every step ends with the weights of one validated only at its end, bit for bit (configs/cpu-flickr8k.yaml
    moved its check and its frequency on the strength of this)."""
    common = ("optim.steps=4", "optim.warmup_steps=1", "train.save_every=4")
    Trainer(ci_config(*common, "train.val_every=1", "data.zeroshot=shapes", "data.zeroshot_size=16"),
            tmp_path / "often", progress=False).run()
    Trainer(ci_config(*common, "train.val_every=100"), tmp_path / "once", progress=False).run()
    often, once = weights(tmp_path / "often", "final"), weights(tmp_path / "once", "final")
    checks = [json.loads(line) for line in (tmp_path / "often" / "metrics.jsonl").read_text().splitlines()
              if '"kind": "val"' in line]
    assert len(checks) == 4 and all("zeroshot_shapes_heldout_top1" in c for c in checks)
    assert often.keys() == once.keys() and all(torch.equal(often[k], once[k]) for k in often)
