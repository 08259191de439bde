"""The trainer: CLIP's recipe (§2.5) with what a long run on small hardware needs.

One step: encode a batch of images and captions, compute the symmetric contrastive loss over the batch
(gathered across data-parallel ranks), backpropagate, take an AdamW step at the scheduled learning rate,
and clamp the temperature (then, if asked, move a moving average of the weights; and with `optim.ssl_weight`,
add SLIP's image self-supervision to the loss, `miniclip.train.ssl`). Around it: bf16/fp16
autocast, gradient checkpointing, GradCache for batches larger than memory, periodic validation and
checkpoints, exact resume, clean stops on SIGINT/SIGTERM, and a guard against non-finite losses. Nothing a
run saved is lost when it dies: checkpoints are committed in two phases (`miniclip.checkpoint`), a kill at
any moment resumes bit-exactly from the last one, a full disk stops the run with the previous checkpoint
intact, and a lock keeps a second run out of the directory.

Run it with `python -m miniclip train --config configs/NAME.yaml` (add `torchrun --nproc_per_node N -m`
for data parallelism).
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import resource
import signal
import sys
import time
import weakref
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from miniclip import checkpoint as ckpt
from miniclip.config import Config, ConfigError, changed_sections, dump_config
from miniclip.data.loaders import train_batches
from miniclip.data.prefetch import Prefetcher
from miniclip.distributed import cleanup_distributed, is_distributed, setup_distributed
from miniclip.env import git_commit, machine
from miniclip.errors import MissingDependency, WriteError
from miniclip.eval.validator import Validator
from miniclip.loss import ClipLoss, SimClrLoss
from miniclip.model import CLIP, trimmed_tokens
from miniclip.tokenizer import tokenize
from miniclip.train.ema import WeightAverage
from miniclip.train.lock import RunLock
from miniclip.train.ssl import ProjectionHead

# What a run writes into its directory (and a fresh run in the same directory replaces), and the files a save
# has between its two phases: staged ones, ours in temporary names, and safetensors' own (it writes through a
# `.tmpXXXXXX` file beside the target).
RUN_FILES = ("config.yaml", "provenance.json", "metrics.jsonl", "last.safetensors", "last.json",
             "last.state.safetensors", "last.state.json", "final.safetensors", "final.json")
STAGED_FILES = ("last.next.*", "final.next.*", ".*.tmp-*", ".tmp*")


class TrainingDiverged(RuntimeError):
    """Too many non-finite losses in a row; the last good state was checkpointed."""


class StoppedAtOnce(KeyboardInterrupt):
    """A second SIGINT/SIGTERM outside a save: the run stops where it is; its last checkpoint is intact."""


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices (and conv kernels) only. Gains, biases, the token, position and
    class embeddings and the temperature are left alone: shrinking them towards 0 has no regularising
    meaning, and decaying the temperature would fight the loss that sets it."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_embedding = "embedding" in name or name == "logit_scale"
        (decay if p.ndim >= 2 and not is_embedding else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(step: int, optim) -> float:
    """Linear warmup over `warmup_steps`, then cosine decay to `lr * min_lr_ratio` at `steps` (§2.5)."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    progress = (step - optim.warmup_steps) / max(1, optim.steps - optim.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return optim.lr * (optim.min_lr_ratio + (1 - optim.min_lr_ratio) * cosine)


class Towers(nn.Module):
    """Both encoders (and the image SSL head, when there is one) behind one forward, so DistributedDataParallel
    sees every parameter a step uses (its gradient hooks only fire for outputs of the wrapped module's forward).
    Returns image features, text features, the temperature's inverse, and the SSL projections of every image
    (None without a head)."""

    def __init__(self, model: CLIP, ssl_head: nn.Module | None = None):
        super().__init__()
        self.model, self.ssl_head = model, ssl_head

    def forward(self, images: torch.Tensor, text: torch.Tensor):
        image_features = self.model.encode_image(images)
        ssl = self.ssl_head(image_features) if self.ssl_head is not None else None
        return image_features, self.model.encode_text(text), self.model.logit_scale.exp(), ssl


def _pick_device(name: str, dist_device: torch.device) -> torch.device:
    if name == "auto":
        return dist_device
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but CUDA is not available (use train.device=cpu or auto)")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """`train.precision` as the run uses it: `auto` is bf16 on a GPU that has it (Ampere and later), fp16 (with
    its GradScaler) on an older GPU, and fp32 on the CPU, where bf16 matmuls need AVX-512 BF16 or AMX to be fast."""
    if name != "auto":
        return name
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _fast_cuda_kernels(precision: str, cudnn_benchmark: bool = True, tf32: bool = True) -> None:
    """Process-wide CUDA settings for training. cuDNN times its convolution algorithms once per input shape and
    keeps the fastest, which pays because a run's shapes never change. An fp32 run lets its matmuls use TF32
    on Ampere and later (a 10-bit mantissa at several times the fp32 rate), as open_clip's trainer does; under
    bf16 or fp16 autocast the model's matmuls are already in half precision and the fp32 loss stays exact.
    Each is set either way, so that a process that trains twice (a benchmark) gets what each run asked for."""
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.set_float32_matmul_precision("high" if tf32 and precision == "fp32" else "highest")


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def to_training_layout(model: CLIP) -> bool:
    """Put `model` in the memory layout training uses; True when that is channels_last, whose images must follow.

    A ModifiedResNet trains faster with its weights and images in channels_last (NHWC) memory order: `bench all`
    measures its step x1.2-1.5 faster (bench/README.md, the `no channels_last` ablation). A ViT's only
    convolution is the patch embedding, so it is left alone."""
    if model.config.is_vit:
        return False
    model.visual.to(memory_format=torch.channels_last)
    return True


class Trainer:
    """One training run of `config`, writing into `out_dir`: `Trainer(config, out).run()`."""

    def __init__(self, config: Config, out_dir: str | Path, resume: bool = False, progress: bool = True):
        self.config, self.out_dir, self.progress = config, Path(out_dir), progress
        self.dist = setup_distributed(use_cuda=config.train.device != "cpu")
        self.is_main = self.dist.rank == 0
        if config.optim.batch_size % self.dist.world_size:
            raise ConfigError(f"optim.batch_size={config.optim.batch_size} does not split evenly over "
                              f"{self.dist.world_size} processes (choose a multiple of {self.dist.world_size})")
        self.device = _pick_device(config.train.device, self.dist.device)
        self.precision = resolve_precision(config.train.precision, self.device)
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.precision=fp16 needs CUDA, for its GradScaler (use fp32 or bf16 on a CPU)")
        if self.device.type == "cuda":
            _fast_cuda_kernels(self.precision, config.train.cudnn_benchmark, config.train.tf32)
        self._build_model()
        self._build_optimizer()
        self.step, self.bad_steps, self.bad_in_a_row, self.stop_signal, self.saving = 0, 0, 0, None, False
        self.lock = RunLock(self.out_dir)
        if self.is_main:  # before the folder is touched; released when the run ends or the trainer is dropped
            self.lock.acquire()
            weakref.finalize(self, self.lock.release)
        self._prepare_out_dir(resume)

    def _build_model(self):
        """The model (identical initial weights on every rank), its memory layout, DDP and torch.compile."""
        t = self.config.train
        torch.manual_seed(t.seed)
        random.seed(t.seed)  # saved with torch's in every checkpoint, so it must start from the seed too
        self.model = CLIP(self.config.model).to(self.device)
        if t.init_from:
            self._load_initial_weights(t.init_from)
        self.model.set_grad_checkpointing(t.grad_checkpointing)
        self.channels_last = to_training_layout(self.model)  # then the images follow (`_next_batch`)
        self.ema = WeightAverage(self.model, t.ema_decay) if t.ema_decay > 0 else None
        o = self.config.optim
        self.views = o.views  # images per caption in a batch
        self.ssl_head = ProjectionHead(self.config.model.embed_dim).to(self.device) if self.views == 2 else None
        towers = self.ddp = Towers(self.model, self.ssl_head)
        if is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            towers = self.ddp = nn.parallel.DistributedDataParallel(towers, device_ids=ids)
        self.towers = torch.compile(towers) if t.compile else towers

    def _load_initial_weights(self, path: str):
        """Fine-tuning: the weights of the checkpoint at `path`, which must have this run's architecture."""
        start = ckpt.load_model(path, self.device)
        if start.config != self.model.config:
            raise ckpt.CheckpointError(f"train.init_from={path} has another architecture than model: (use a "
                                       "checkpoint trained with the same model section)")
        self.model.load_state_dict(start.state_dict())

    def _build_optimizer(self):
        """AdamW over the decay / no-decay groups, the fp16 gradient scaler, autocast, and the loss."""
        o, precision = self.config.optim, self.precision
        groups = param_groups(self.model, o.weight_decay)
        if self.ssl_head is not None:  # its matrices decayed, its biases not, like the model's
            for group, head_group in zip(groups, param_groups(self.ssl_head, o.weight_decay)):
                group["params"] += head_group["params"]
        self.optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.autocast = torch.autocast(self.device.type, dtype=dtype) if dtype else nullcontext()
        self.loss_fn = ClipLoss(label_smoothing=o.label_smoothing)
        self.ssl_loss_fn = SimClrLoss(o.ssl_temperature)
        self.loss_parts: dict[str, float] = {}  # the last step's contrastive and SSL losses, when both are used

    def _prepare_out_dir(self, resume: bool):
        """The validator and TensorBoard (which only the main rank keeps); then resume from `last.*`
        (finishing a save that a kill interrupted), or clear what an earlier run left (so no file mixes two
        runs). Restoring comes last: building the validator draws from the global RNG, whose saved state
        must be the one the next step sees."""
        self.validator = Validator(self.config, self.device) if self.is_main else None
        self.tensorboard = None
        if self.config.train.tensorboard and self.is_main:
            try:  # an optional dependency
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise MissingDependency("train.tensorboard=true needs the tensorboard package, which is not "
                                        "installed (pip install tensorboard, or set train.tensorboard=false)") from e
            self.tensorboard = SummaryWriter(str(self.out_dir / "tensorboard"))
        if self.is_main:
            if resume:
                for tag in ("last", "final"):
                    ckpt.finish_interrupted_save(self.out_dir, tag)
            for pattern in STAGED_FILES:  # what is left belongs to saves killed before they committed
                for path in self.out_dir.glob(pattern):
                    path.unlink()
        if resume and (self.out_dir / "last.json").exists():
            self._restore(self.out_dir / "last")
            if self.is_main:
                self._forget_metrics_after(self.step)
        elif self.is_main:
            for name in RUN_FILES:
                (self.out_dir / name).unlink(missing_ok=True)

    # ------------------------------------------------------------------------- one step

    def _loss(self, image_features, text_features, logit_scale, ssl=None) -> torch.Tensor:
        # The loss itself runs in fp32 whatever the autocast: a softmax over the batch at temperature 1/100
        # is where bf16's 8 bits of mantissa would show.
        # With the SSL loss there are two views of each image, view-major (`_next_batch`): the contrastive loss
        # sees the first; without it the slice takes every image. With `data.captions_per_image` = k each image
        # brings k captions, image-major.
        k = self.config.data.captions_per_image
        n = text_features.shape[0] // k
        contrastive = self.loss_fn(F.normalize(image_features[:n].float(), dim=-1),
                                   F.normalize(text_features.float(), dim=-1), logit_scale.float(), k)
        if ssl is None:
            return contrastive
        z = F.normalize(ssl.float(), dim=-1)
        ssl_loss = self.ssl_loss_fn(z[:n], z[n:])
        self.loss_parts = {"clip_loss": contrastive.detach(), "ssl_loss": ssl_loss.detach()}
        return contrastive + self.config.optim.ssl_weight * ssl_loss

    def train_step(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Gradients of one batch's loss (in `.grad`); returns the loss. GradCache when chunks > 1.
        The batch may come from anywhere (an experiment's fixed batch, a test's): it is moved to the model's
        device, which costs nothing when it is there already."""
        images, tokens = images.to(self.device, non_blocking=True), tokens.to(self.device, non_blocking=True)
        k = self.config.optim.grad_cache_chunks
        self.optimizer.zero_grad(set_to_none=True)
        if k == 1:
            with self.autocast:
                loss = self._loss(*self.towers(images, tokens))
            self.scaler.scale(loss).backward()
            return loss.detach()
        return self._grad_cache_step(images.chunk(k), tokens.chunk(k))

    def _grad_cache_step(self, image_chunks, token_chunks) -> torch.Tensor:
        """GradCache (Gao et al. 2021): the loss of a batch of k*b pairs, in memory for b.

        1. Encode every chunk without a graph, keeping only the features.
        2. Compute the loss on all features at once, so every pair has all k*b - 1 negatives, and
           backpropagate it as far as the features (and the temperature).
        3. Re-encode each chunk with a graph and push the cached feature gradients through it.
        The parameter gradients are those of the full batch; the price is a second forward pass."""
        with torch.no_grad(), self.autocast:
            feats = [self.towers(i, t)[:2] for i, t in zip(image_chunks, token_chunks)]  # (no SSL head here)
        image_features = torch.cat([f[0] for f in feats]).float().requires_grad_()
        text_features = torch.cat([f[1] for f in feats]).float().requires_grad_()
        loss = self._loss(image_features, text_features, self.model.logit_scale.exp())
        self.scaler.scale(loss).backward()
        # Under DDP the chunks' backward passes run unsynchronised and gradients are averaged once at the end.
        no_sync = self.ddp.no_sync if is_distributed() else nullcontext
        image_row = text_row = 0  # (a chunk holds k captions per image with data.captions_per_image = k)
        with no_sync():
            for images, tokens in zip(image_chunks, token_chunks):
                with self.autocast:
                    fi, ft = self.towers(images, tokens)[:2]
                torch.autograd.backward([fi.float(), ft.float()],
                                        [image_features.grad[image_row:image_row + len(images)],
                                         text_features.grad[text_row:text_row + len(tokens)]])
                image_row, text_row = image_row + len(images), text_row + len(tokens)
        if is_distributed():
            for p in self.model.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= self.dist.world_size
        return loss.detach()

    def optimizer_step(self, loss: torch.Tensor) -> bool:
        """Apply the step at the scheduled LR, unless the loss is not finite (then skip and count it)."""
        if not torch.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            self.bad_steps += 1
            self.bad_in_a_row += 1
            return False
        self.bad_in_a_row = 0
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, self.config.optim)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():  # §2.5: the temperature is clipped so logits are scaled by at most 100
            self.model.logit_scale.clamp_(0, math.log(self.config.optim.max_logit_scale))
        if self.ema is not None:
            self.ema.update(self.model)
        return True

    @property
    def published_model(self) -> CLIP:
        """The weights that are validated and saved as final: their moving average if `train.ema_decay` > 0."""
        return self.model if self.ema is None else self.ema.model

    # ------------------------------------------------------------------------- the run

    def run(self, max_steps: int | None = None, after_step: Callable[[Trainer], None] | None = None) -> dict:
        """Train until `optim.steps` (or `max_steps` steps from here, used by tests to simulate a crash).

        Each pass of the loop: stop checks, one train step, the optimizer step, `after_step(self)` if given
        (the recipe bench copies weights there), then the periodic phases (log, validate, save). Returns the
        run's status, its step and the count of skipped steps."""
        c = self.config
        start_step, start_time = self.step, time.time()
        if self.is_main:
            self._write_start()
        handlers = self._catch_signals()
        batches = self._batches()
        bar = tqdm(total=c.optim.steps, initial=self.step, desc=c.name, disable=not (self.is_main and self.progress),
                   dynamic_ncols=True)
        self._window = {"start": time.time(), "samples": 0}  # throughput since the last log line
        status = "completed"
        try:
            while self.step < c.optim.steps:
                # stop checks: a test's simulated crash, or SIGINT / SIGTERM (finish the step, save, stop)
                if max_steps is not None and self.step - start_step >= max_steps:
                    return {"status": "stopped", "step": self.step}
                if self.stop_signal is not None:
                    status = f"interrupted by {signal.Signals(self.stop_signal).name}"
                    break
                # train step and optimizer step
                images, tokens = self._next_batch(batches)
                loss = self.train_step(images, tokens)
                took_step = self.optimizer_step(loss)
                self.step += 1
                self._window["samples"] += len(images) // self.views * self.dist.world_size
                bar.update(1)
                self._check_divergence()
                if after_step is not None:
                    after_step(self)
                # periodic phases
                last = self.step == c.optim.steps
                if self.is_main and (self.step % c.train.log_every == 0 or last):
                    record = self._log_step(loss, took_step)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", T=f"{record['logit_scale']:.1f}")
                if self.is_main and (self.step % c.train.val_every == 0 or last):
                    self._log({"step": self.step, "kind": "val", **self.validator(self.published_model)})
                if self.step % c.train.save_every == 0:
                    self._save("last")
            self._save("last")
            if status == "completed":
                self._save_final()
        except TrainingDiverged:
            status = "diverged"
            raise
        except StoppedAtOnce:
            status = "stopped at once by a second signal"
            raise
        except WriteError:
            status = "failed to write"
            raise
        except Exception as e:
            status = f"crashed ({type(e).__name__})"
            raise
        finally:
            if isinstance(batches, Prefetcher):
                batches.close()
            bar.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if self.is_main:
                self._write_end(status, time.time() - start_time)
                if self.tensorboard is not None:
                    self.tensorboard.close()
                self.lock.release()
            cleanup_distributed()
        return {"status": status, "step": self.step, "bad_steps": self.bad_steps}

    # ------------------------------------------------------------------------- the loop's phases

    def _batches(self):
        """This rank's (images, tokens) batches from the current step on, still on the host. On a GPU the
        images come in pinned memory, and with loader workers the next batches are received and tokenised in a
        background thread while the GPU works (`Prefetcher`). Without workers the batches are made in this
        process, some of them (Flickr8k's augmentation) with the global RNG, which a second thread must not
        share; and on the CPU the cores are busy with the step anyway: there the main thread does it."""
        on_gpu, t = self.device.type == "cuda", self.config.train
        batches = train_batches(self.config, self.step, self.dist.rank, self.dist.world_size,
                                pin_memory=on_gpu and t.pin_memory)
        if on_gpu and t.prefetch and self.config.data.num_workers > 0:
            return Prefetcher(batches, self._tokenized)
        return map(self._tokenized, batches)

    def _tokenized(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens for a batch's captions, cut on the host to the positions the text tower runs (so that the
        step does not wait for the GPU to count them), pinned when the images are."""
        images, captions = batch
        tokens = tokenize(captions, self.config.model.context_length)
        if self.model.trim_text and self.config.train.trim_on_host:
            tokens = trimmed_tokens(tokens)
        return images, tokens.pin_memory() if images.is_pinned() else tokens

    def _next_batch(self, batches) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (images, tokens) on the model's device, images in the model's memory format. From pinned
        memory the copies are asynchronous: they overlap the GPU's work on the step before."""
        images, tokens = next(batches)
        if images.dim() == 5:  # [B, 2, 3, H, W], two views for the SSL loss -> [2B, 3, H, W], view-major
            images = torch.cat([images[:, 0], images[:, 1]])
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, tokens.to(self.device, non_blocking=True)

    def _check_divergence(self):
        """Stop with `TrainingDiverged` after `train.max_bad_steps` non-finite losses in a row, state saved."""
        if self.bad_in_a_row >= self.config.train.max_bad_steps:
            self._save("last")
            raise TrainingDiverged(
                f"{self.bad_in_a_row} non-finite losses in a row at step {self.step} "
                f"({self.bad_steps} in all); the state before them is in {self.out_dir}/last.*. "
                "Lower optim.lr, raise optim.warmup_steps or use train.precision=fp32.")

    def _log_step(self, loss: torch.Tensor, took_step: bool) -> dict:
        """One line of metrics.jsonl: loss, LR, temperature, throughput since the last line, memory."""
        now = time.time()
        record = {"step": self.step, "loss": loss.item(), "lr": learning_rate(self.step - 1, self.config.optim),
                  "logit_scale": self.model.logit_scale.exp().item(),
                  "samples_per_s": self._window["samples"] / (now - self._window["start"]),
                  "skipped": not took_step, "bad_steps": self.bad_steps,
                  "peak_memory_mb": _peak_memory_mb(self.device),
                  **{k: v.item() for k, v in self.loss_parts.items()}}
        self._log(record)
        self._window = {"start": now, "samples": 0}
        return record

    def _save_final(self):
        """The finished model with its last validation metrics: what `train_if_changed` and the book read."""
        if self.is_main:
            metrics = self.validator.last if self.validator else {}
            with self._saving():
                ckpt.save_checkpoint(self.out_dir, "final", self.published_model, step=self.step,
                                     run_config=self.config.to_dict(), metrics=metrics)

    # ------------------------------------------------------------------------- bookkeeping

    def _catch_signals(self) -> dict:
        """On SIGINT/SIGTERM, finish the current step, save, and stop (the loop checks `stop_signal`). A second
        signal means "now": it stops the run where it is, unless a save is under way, which is let finish
        (the loop then stops after it) so that the checkpoint on disk is whole."""
        def request_stop(signum, frame):
            if self.stop_signal is not None and not self.saving:
                raise StoppedAtOnce(signum)
            self.stop_signal = signum

        handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return handlers

    def _training_state(self) -> dict:
        state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                 "rng": ckpt.rng_state(), "bad_steps": self.bad_steps}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.ssl_head is not None:
            state["ssl_head"] = {k: v.detach().clone() for k, v in self.ssl_head.state_dict().items()}
        return state

    def _save(self, tag: str):
        if self.is_main:
            with self._saving():
                ckpt.save_checkpoint(self.out_dir, tag, self.model, step=self.step,
                                     run_config=self.config.to_dict(), training_state=self._training_state())

    @contextmanager
    def _saving(self):
        """Marks a save under way: a second signal then waits for the save to finish."""
        self.saving = True
        try:
            yield
        finally:
            self.saving = False

    def _restore(self, path: Path):
        meta = ckpt.read_metadata(path)
        changed = changed_sections(meta["config"], self.config)  # as `runs.trained_with` compares them
        if changed:
            raise ckpt.CheckpointError(f"cannot resume from {path}: the config changed (sections: {changed})")
        weights = ckpt.load_model(path, self.device)
        self.model.load_state_dict(weights.state_dict())
        state = ckpt.load_training_state(path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.ssl_head is not None:
            self.ssl_head.load_state_dict(state["ssl_head"])
        ckpt.set_rng_state(state["rng"])
        self.step, self.bad_steps = state["step"], state["bad_steps"]
        if self.is_main:
            print(f"resuming {self.config.name} from step {self.step} ({path})", file=sys.stderr)

    def _log(self, record: dict):
        try:
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise WriteError(f"could not write {self.out_dir / 'metrics.jsonl'}: {e.strerror or e} (free some "
                             "space, then continue with --resume from the last checkpoint)") from e
        if self.tensorboard is not None:
            prefix = "val/" if record.get("kind") == "val" else "train/"
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                    self.tensorboard.add_scalar(prefix + key, value, record["step"])

    def _forget_metrics_after(self, step: int):
        """On resume, drop the log lines of the steps after the checkpoint (they are about to be redone) and
        any line a kill cut short, so metrics.jsonl reads as one uninterrupted run."""
        path = self.out_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line + "\n")
        _write_atomically(path, "".join(kept))

    def _write_start(self):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.out_dir / "config.yaml", dump_config(self.config))
        path = self.out_dir / "provenance.json"
        try:
            prov = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            prov = {"segments": []}
        prov.update(config=self.config.to_dict(), git_commit=git_commit(), machine=machine(),
                    seed=self.config.train.seed, command=" ".join(sys.argv), world_size=self.dist.world_size,
                    device=str(self.device), precision=self.precision)
        prov["segments"].append({"start_step": self.step, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        _write_atomically(path, json.dumps(prov, indent=2))

    def _write_end(self, status: str, seconds: float):
        """Close the provenance record. Called while the run is already ending (perhaps because the disk is
        full), so a failure here is reported on one line instead of hiding the reason the run ended."""
        path = self.out_dir / "provenance.json"
        try:
            prov = json.loads(path.read_text())
            prov["segments"][-1].update(end_step=self.step, wall_s=seconds, status=status)
            prov.update(status=status, final_step=self.step, bad_steps=self.bad_steps,
                        wall_s=sum(s.get("wall_s", 0) for s in prov["segments"]), python=platform.python_version())
            _write_atomically(path, json.dumps(prov, indent=2))
        except (OSError, ValueError, LookupError) as e:
            print(f"warning: could not record the end of the run in {path} ({e})", file=sys.stderr)


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` by `text` whole: a kill leaves the old file or the new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"could not write {path}: {e.strerror or e} (free some space, then continue with "
                         "--resume)") from e

