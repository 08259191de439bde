"""Tests for miniclip.loss: formulas, gradients, open_clip parity and 2-process gloo DDP."""

from __future__ import annotations

import datetime
import math
import multiprocessing
import os
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from miniclip.loss import ClipLoss, SigLipLoss

SHAPES = [(1, 4), (2, 8), (7, 16), (32, 64)]
SCALES = [1.0, 1 / 0.07, 100.0]


def _features(n: int, d: int, seed: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    return img.to(dtype), txt.to(dtype)


# --- independent float64 references ------------------------------------------------


def _np_logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def np_clip_loss(img: np.ndarray, txt: np.ndarray, scale: float) -> float:
    s = scale * img @ txt.T
    diag = np.diag(s)
    # row i: -log softmax(s[i])[i];  column i: -log softmax(s[:, i])[i]
    per_image = _np_logsumexp(s, axis=1) - diag
    per_text = _np_logsumexp(s, axis=0) - diag
    return float((per_image.mean() + per_text.mean()) / 2)


def np_siglip_loss(img: np.ndarray, txt: np.ndarray, scale: float, bias: float) -> float:
    s = scale * img @ txt.T + bias
    z = -np.ones_like(s)
    np.fill_diagonal(z, 1.0)
    # -log sigmoid(x) = log(1 + exp(-x)), written stably as logaddexp(0, -x)
    return float(np.logaddexp(0.0, -z * s).sum() / s.shape[0])


def torch64_clip_loss(img, txt, scale):
    """Same formula as np_clip_loss, in float64 torch ops so autograd can differentiate it."""
    s = scale * img @ txt.T
    diag = torch.diagonal(s)
    row = s.max(dim=1, keepdim=True).values
    col = s.max(dim=0, keepdim=True).values
    lse_rows = (row + torch.log(torch.exp(s - row).sum(1, keepdim=True))).squeeze(1)
    lse_cols = (col + torch.log(torch.exp(s - col).sum(0, keepdim=True))).squeeze(0)
    return ((lse_rows - diag).mean() + (lse_cols - diag).mean()) / 2


def torch64_siglip_loss(img, txt, scale, bias):
    s = scale * img @ txt.T + bias
    z = 2 * torch.eye(s.shape[0], dtype=s.dtype) - 1
    return torch.log1p(torch.exp(-z * s)).sum() / s.shape[0]


# --- single-process correctness -------------------------------------------------------


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_clip_loss_matches_formula(n, d, scale):
    img, txt = _features(n, d, seed=n * 1000 + d)
    expected = np_clip_loss(img.double().numpy(), txt.double().numpy(), scale)
    got32 = ClipLoss()(img, txt, torch.tensor(scale))
    got64 = ClipLoss()(img.double(), txt.double(), torch.tensor(scale, dtype=torch.float64))
    assert math.isclose(got64.item(), expected, rel_tol=1e-12, abs_tol=1e-12)
    assert math.isclose(got32.item(), expected, rel_tol=1e-5, abs_tol=1e-5)


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_clip_loss_gradients(n, d, scale):
    img, txt = _features(n, d, seed=n * 7 + d)
    leaves32 = [img.clone().requires_grad_(), txt.clone().requires_grad_(), torch.tensor(scale, requires_grad=True)]
    leaves64 = [t.detach().double().requires_grad_() for t in leaves32]
    ClipLoss()(*leaves32).backward()
    torch64_clip_loss(*leaves64).backward()
    for a, b in zip(leaves32, leaves64):
        torch.testing.assert_close(a.grad.double(), b.grad, rtol=1e-4, atol=1e-5)


def test_simclr_loss_matches_a_loop_over_rows_and_passes_gradients():
    from miniclip.loss import SimClrLoss

    a, b = _features(5, 8, seed=11)
    a.requires_grad_()
    tau = 0.2
    z = torch.cat([a, b]).double()
    n = 5
    expected = 0.0
    for i in range(2 * n):  # each row against every other row; its positive is its other view
        positive = (i + n) % (2 * n)
        others = [j for j in range(2 * n) if j != i]
        scores = torch.stack([z[i] @ z[j] / tau for j in others])
        expected += -(z[i] @ z[positive] / tau - torch.logsumexp(scores, 0)) / (2 * n)
    got = SimClrLoss(tau)(a, b)
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-5)
    got.backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    # two identical views of well-separated images: the positive dominates, the loss is near its minimum
    eye = torch.eye(4)
    assert SimClrLoss(0.05)(eye, eye).item() < 1e-3


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_label_smoothing_matches_the_smoothed_target_formula_and_passes_gradients(eps):
    # Each direction's target: 1 - eps on the pair, eps/N spread over the row's N candidates, so the loss is
    # (1 - eps) * (-log p_ii) + eps * mean_j(-log p_ij), averaged over rows and then over the two directions.
    img, txt = _features(6, 8, seed=3)
    img.requires_grad_()
    scale = 1 / 0.07
    s = scale * img.double() @ txt.double().T
    expected = 0.0
    for logits in (s, s.T):
        logp = torch.log_softmax(logits, dim=1)
        expected += ((1 - eps) * -logp.diagonal() + eps * -logp.mean(dim=1)).mean() / 2
    got = ClipLoss(label_smoothing=eps)(img, txt, torch.tensor(scale))
    assert math.isclose(got.item(), expected.item(), rel_tol=1e-5)
    got.backward()
    assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0


@pytest.mark.parametrize("n,d", SHAPES)
@pytest.mark.parametrize("scale,bias", [(10.0, -10.0), (1.0, 0.0), (1 / 0.07, -3.0)])
def test_siglip_loss_matches_formula_and_gradients(n, d, scale, bias):
    img, txt = _features(n, d, seed=n * 31 + d)
    expected = np_siglip_loss(img.double().numpy(), txt.double().numpy(), scale, bias)
    got64 = SigLipLoss()(img.double(), txt.double(), torch.tensor(scale, dtype=torch.float64), bias)
    assert math.isclose(got64.item(), expected, rel_tol=1e-12, abs_tol=1e-12)

    leaves32 = [
        img.clone().requires_grad_(),
        txt.clone().requires_grad_(),
        torch.tensor(scale, requires_grad=True),
        torch.tensor(bias, requires_grad=True),
    ]
    leaves64 = [t.detach().double().requires_grad_() for t in leaves32]
    got32 = SigLipLoss()(*leaves32)
    assert math.isclose(got32.item(), expected, rel_tol=1e-5, abs_tol=1e-5)
    got32.backward()
    torch64_siglip_loss(*leaves64).backward()
    for a, b in zip(leaves32, leaves64):
        torch.testing.assert_close(a.grad.double(), b.grad, rtol=1e-4, atol=1e-5)


def test_clip_loss_perfect_alignment_is_small_and_label_cache_reused():
    # Orthonormal, perfectly matched pairs with a large scale: the loss tends to 0.
    eye = torch.eye(8)
    loss_fn = ClipLoss()
    assert loss_fn(eye, eye, torch.tensor(100.0)).item() < 1e-6
    # Uninformative features (all identical): every softmax is uniform, loss = log N.
    same = F.normalize(torch.ones(8, 4), dim=-1)
    assert math.isclose(loss_fn(same, same, torch.tensor(10.0)).item(), math.log(8), rel_tol=1e-6)
    assert len(loss_fn._labels) == 1


@pytest.mark.parametrize("n,d", [(2, 8), (16, 32)])
def test_matches_open_clip(n, d):
    open_clip_loss = pytest.importorskip("open_clip.loss")
    img, txt = _features(n, d, seed=5 + n)
    scale = torch.tensor(1 / 0.07)
    torch.testing.assert_close(
        ClipLoss()(img, txt, scale), open_clip_loss.ClipLoss()(img, txt, scale), rtol=1e-6, atol=1e-6
    )
    # open_clip's SigLipLoss uses the same convention as ours in a single process:
    # sum over all N² pairs of -logsigmoid(z·logit), divided by the number of images.
    bias = torch.tensor(-10.0)
    torch.testing.assert_close(
        SigLipLoss()(img, txt, scale, bias),
        open_clip_loss.SigLipLoss()(img, txt, scale, bias),
        rtol=1e-6,
        atol=1e-6,
    )


# --- two processes, gloo, DistributedDataParallel -------------------------------------

WORLD = 2
GLOBAL_N = 8
IMG_IN, TXT_IN, EMBED = 12, 10, 6


class _TinyClip(torch.nn.Module):
    """Two linear "encoders" and a learnable log-scale (and bias for SigLIP)."""

    def __init__(self, siglip: bool):
        super().__init__()
        torch.manual_seed(0)  # identical weights in every process
        self.image = torch.nn.Linear(IMG_IN, EMBED)
        self.text = torch.nn.Linear(TXT_IN, EMBED)
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.bias = torch.nn.Parameter(torch.tensor(-10.0)) if siglip else None

    def forward(self, images, texts):
        i = F.normalize(self.image(images), dim=-1)
        t = F.normalize(self.text(texts), dim=-1)
        return i, t, self.log_scale.exp()


def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return torch.randn(GLOBAL_N, IMG_IN, generator=g), torch.randn(GLOBAL_N, TXT_IN, generator=g)


def _run_step(model: torch.nn.Module, images, texts, siglip: bool) -> torch.Tensor:
    i, t, scale = model(images, texts)
    bias = (model.module if hasattr(model, "module") else model).bias
    loss = SigLipLoss()(i, t, scale, bias) if siglip else ClipLoss()(i, t, scale)
    loss.backward()
    return loss


def _grads(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {name: p.grad.detach().double().numpy() for name, p in model.named_parameters()}


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    out = Path(out_dir)
    try:
        torch.set_num_threads(1)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        torch.distributed.init_process_group(
            "gloo",
            init_method=f"file://{init_file}",
            rank=rank,
            world_size=WORLD,
            timeout=datetime.timedelta(seconds=30),
        )
        images, texts = _global_batch()
        n = GLOBAL_N // WORLD
        local = slice(rank * n, (rank + 1) * n)
        for siglip in (False, True):
            tag = "siglip" if siglip else "clip"
            model = torch.nn.parallel.DistributedDataParallel(_TinyClip(siglip))
            loss = _run_step(model, images[local], texts[local], siglip)
            np.save(out / f"{tag}_loss_rank{rank}.npy", np.array(loss.item()))
            for name, g in _grads(model.module).items():
                np.save(out / f"{tag}_grad_{name}_rank{rank}.npy", g)
        torch.distributed.destroy_process_group()
    except BaseException:
        (out / f"error_rank{rank}.txt").write_text(traceback.format_exc())
        raise


@pytest.mark.slow
def test_ddp_gloo_matches_single_process(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_ddp_worker, args=(r, str(tmp_path / "rendezvous"), str(tmp_path)))
        for r in range(WORLD)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    errors = "\n".join(f.read_text() for f in sorted(tmp_path.glob("error_rank*.txt")))
    assert not hung, f"DDP workers did not finish in time\n{errors}"
    assert all(p.exitcode == 0 for p in procs), f"DDP worker failed\n{errors}"

    images, texts = _global_batch()
    for siglip in (False, True):
        tag = "siglip" if siglip else "clip"
        model = _TinyClip(siglip)
        ref_loss = _run_step(model, images, texts, siglip).item()
        ref_grads = _grads(model)
        for r in range(WORLD):
            # (a) every rank computes the global-batch loss
            loss_r = float(np.load(tmp_path / f"{tag}_loss_rank{r}.npy"))
            assert abs(loss_r - ref_loss) <= 1e-6, (tag, r, loss_r, ref_loss)
            # (b) gathered-gradient sum + DDP averaging == single-process gradients
            for name, ref in ref_grads.items():
                got = np.load(tmp_path / f"{tag}_grad_{name}_rank{r}.npy")
                np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=f"{tag} {name} rank {r}")


def test_hard_negative_captions_join_only_the_image_softmax():
    torch.manual_seed(0)
    n, m, d, scale = 6, 3, 8, 10.0
    img = F.normalize(torch.randn(n, d), dim=-1)
    txt = F.normalize(torch.randn(n + m, d), dim=-1)
    logits = scale * img @ txt.T  # [n, n + m]
    expected_img = -(logits.diagonal() - torch.logsumexp(logits, dim=1)).mean()  # over all n + m captions
    expected_txt = -(logits.diagonal() - torch.logsumexp(logits[:, :n], dim=0)).mean()  # over the n images
    got = ClipLoss()(img, txt, scale)
    torch.testing.assert_close(got, (expected_img + expected_txt) / 2)
    # Without negatives it is the ordinary loss; with them, the image side's loss can only grow.
    assert ClipLoss()(img, txt[:n], scale) < got


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_several_captions_per_image_match_the_multi_positive_formula_and_pass_gradients(eps):
    # Image direction: one softmax over all N*K captions, target 1/K on each of the image's own K (smoothed
    # towards uniform by eps). Caption direction: an ordinary N-way cross-entropy towards the caption's image.
    n, k = 5, 3
    img, _ = _features(n, 8, seed=11)
    _, txt = _features(n * k, 8, seed=12)
    img.requires_grad_()
    scale = 1 / 0.07
    s = scale * img.double() @ txt.double().T  # [N, N*K]
    owner = torch.arange(n * k) // k
    logp_img = torch.log_softmax(s, dim=1)
    logp_txt = torch.log_softmax(s.T, dim=1)
    own = (owner[None, :] == torch.arange(n)[:, None]).double()
    loss_img = ((1 - eps) * -(logp_img * own).sum(1) / k + eps * -logp_img.mean(1)).mean()
    loss_txt = ((1 - eps) * -logp_txt[torch.arange(n * k), owner] + eps * -logp_txt.mean(1)).mean()
    got = ClipLoss(label_smoothing=eps)(img, txt, torch.tensor(scale), captions_per_image=k)
    assert math.isclose(got.item(), ((loss_img + loss_txt) / 2).item(), rel_tol=1e-5)
    got.backward()
    assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
    # One caption each is the ordinary loss, and a batch with the wrong number of captions is refused.
    assert torch.equal(ClipLoss()(img, txt[:n], scale, captions_per_image=1), ClipLoss()(img, txt[:n], scale))
    with pytest.raises(ValueError, match="3 captions per image need 15 text rows for 5 images, got 14"):
        ClipLoss()(img, txt[:-1], scale, captions_per_image=3)
