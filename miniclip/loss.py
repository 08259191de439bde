"""The two contrastive objectives: CLIP's softmax loss and SigLIP's sigmoid loss.

Both start from the same picture. A batch holds `N` matching (image, text) pairs.
The encoders map them to L2-normalised embeddings `I` and `T` (each `[N, D]`),
so `I @ T.T` is the `N×N` matrix of cosine similarities: entry `(i, j)` says
how well image `i` goes with text `j`. The diagonal holds the true pairs; the
`N² − N` off-diagonal entries are negatives that come for free from the batch.

* **CLIP** (Radford et al. 2021, §2.3 and Fig. 3) reads each row as an `N`-way
  classification "which text is mine?" and each column as "which image is mine?",
  and averages the two cross-entropies.
* **SigLIP** (Zhai et al. 2023) instead scores every one of the `N²` entries as an
  independent binary question "is this a pair?" with a sigmoid.

With data parallelism, the batch is split across processes, but the negatives
should still come from the *global* batch. Both losses therefore gather the
features of every process first (with gradients, see `miniclip.distributed`)
and evaluate the global-batch loss, so each process computes the very number a
single process with the whole batch would.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from miniclip.distributed import gather_with_grad, is_distributed

__all__ = [
    "CLIP_INIT_LOGIT_SCALE",
    "CLIP_MAX_LOGIT_SCALE",
    "SIGLIP_INIT_LOGIT_BIAS",
    "SIGLIP_INIT_LOGIT_SCALE",
    "ClipLoss",
    "SigLipLoss",
    "SimClrLoss",
    "clip_logits",
]

# The models store the *log* of the temperature-inverse ("logit scale") as a
# learnable scalar t and the losses receive exp(t). Recommended initial values:

#: CLIP: t = log(1/0.07), i.e. softmax temperature 0.07 (paper §2.5).
CLIP_INIT_LOGIT_SCALE = math.log(1 / 0.07)
#: CLIP clips exp(t) at 100 so training cannot sharpen the softmax without bound.
CLIP_MAX_LOGIT_SCALE = 100.0
#: SigLIP: t = log(10), so exp(t) = 10.
SIGLIP_INIT_LOGIT_SCALE = math.log(10.0)
#: SigLIP: bias b = -10. With N² - N negatives against N positives, the prior
#: probability of "is a pair" is tiny; starting at sigmoid(-10) ≈ 4.5e-5 avoids the
#: huge initial loss (and gradient) from pushing down N² logits that start near 0.
SIGLIP_INIT_LOGIT_BIAS = -10.0


def clip_logits(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
) -> torch.Tensor:
    """Scaled similarity matrix `logits[i, j] = scale · ⟨I_i, T_j⟩`, shape `[N_img, N_txt]`.

    Row `i` scores image `i` against every text; column `j` (row `j` of the
    transpose) scores text `j` against every image. The features are expected to be
    L2-normalised already, so the dot product is a cosine similarity in `[-1, 1]`
    and `logit_scale` (already exponentiated) sets how peaked the softmax is.
    """
    return logit_scale * image_features @ text_features.T


def _gather_if_distributed(
    image_features: torch.Tensor, text_features: torch.Tensor, gather: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    # Every rank ends up holding the same global [N_global, D] matrices, in rank
    # order, so the diagonal still pairs image k with text k.
    if gather and is_distributed():
        return gather_with_grad(image_features), gather_with_grad(text_features)
    return image_features, text_features


class ClipLoss(nn.Module):
    """CLIP's symmetric cross-entropy over the in-batch similarity matrix.

    With `logits = scale · I Tᵀ` (`N×N`) and the correct match of row `i` being
    column `i`::

        L_img = -(1/N) Σ_i log( exp(logits[i, i]) / Σ_j exp(logits[i, j]) )
        L_txt = -(1/N) Σ_i log( exp(logits[i, i]) / Σ_j exp(logits[j, i]) )
        loss  = (L_img + L_txt) / 2

    `L_img` is a softmax over each row (image → which text?), `L_txt` over each
    column (text → which image?). Both are ordinary cross-entropies with labels
    `0, 1, …, N-1`, exactly the paper's Fig. 3 pseudocode.

    Distributed use: inside a `torch.distributed` group with more than one process,
    each rank passes its local `[n, D]` features and the loss is computed on the
    gathered `[W·n, D]` global batch. Every rank's loss then equals the
    single-process loss on the global batch, and after DDP averages the parameter
    gradients they equal the single-process gradients (see `forward`). Pass
    `gather=False` to always use only the local batch (e.g. for evaluation on
    ragged batches).

    Hard negatives (NegCLIP, Yuksekgonul et al. 2023): `text_features` may hold
    `M` rows more than `image_features`. Rows `N … N+M-1` are captions that match
    no image (say, a true caption with its two objects swapped); they join every
    image's softmax as extra wrong answers, and the text → image direction uses
    the `N` real captions only. Not with a gathered (multi-process) batch, whose
    rows would interleave ranks' negatives with their captions.

    Label smoothing (`label_smoothing=e`, default 0): each cross-entropy's target is
    `1 - e` on the true match plus `e/K` on each of the row's `K` candidates, as in
    `F.cross_entropy(..., label_smoothing=e)`. With few training pairs it keeps the
    loss from paying for ever-sharper matches of pairs it has already memorised.

    Several captions per image (`captions_per_image=K` in `forward`): a dataset with
    `K` human captions of each photo (Flickr8k has five) can bring them all to one
    step, for the price of the text tower alone; each image then has `K` matches.
    """

    def __init__(self, gather: bool = True, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.gather = gather
        self.label_smoothing = label_smoothing
        # The targets would be rebuilt on every step otherwise; batch size and device rarely
        # change, so keep the few tensors we have made.
        self._labels: dict[tuple[int, int, torch.device], torch.Tensor] = {}
        self._soft_targets: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

    def _targets(self, n: int, device: torch.device, k: int = 1) -> torch.Tensor:
        """The image each of the `N·K` captions describes: `arange(N)` for one caption per image."""
        key = (n, k, device)
        if key not in self._labels:
            self._labels[key] = torch.arange(n * k, device=device) // k
        return self._labels[key]

    def _multi_caption_targets(self, n: int, k: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """`[N, N·K]`: `1/K` where caption `c` describes image `i`, else 0 (each row sums to 1)."""
        key = (n, k, device, dtype)
        if key not in self._soft_targets:
            owner = self._targets(n, device, k)
            self._soft_targets[key] = (owner[None, :] == torch.arange(n, device=device)[:, None]).to(dtype) / k
        return self._soft_targets[key]

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | float,
        captions_per_image: int = 1,
    ) -> torch.Tensor:
        """Return the scalar loss for L2-normalised `[N, D]` features and `exp(t)`.

        With `captions_per_image=K > 1`, `text_features` holds `K` captions of each image, image-major
        (`[N·K, D]`: rows `iK … iK+K-1` describe image `i`), and all `K` are its matches
        (`_multi_caption_loss`).

        Why the distributed gradients come out right: say there are `W` ranks and
        each computes the same global loss `L`. On rank `r` the backward pass
        yields `∂L/∂(gathered features)`; the gather's backward sums these over
        all ranks and keeps rank `r`'s rows, giving `W · ∂L/∂x_r`, because all
        `W` copies of `L` depend on `x_r`. Rank `r`'s parameter gradient is
        then `W · ∂L/∂x_r · ∂x_r/∂θ`, and DDP divides the sum over ranks by `W`:
        `Σ_r ∂L/∂x_r · ∂x_r/∂θ = ∂L/∂θ`, the single-process gradient. The logit
        scale, used directly by every rank, gets `∂L/∂scale` on each rank, which
        averaging leaves unchanged. (Without the sum, the encoders would receive
        only `1/W` of their true gradient while the scale got all of it.)
        """
        n = image_features.shape[0]
        if captions_per_image > 1 and text_features.shape[0] != n * captions_per_image:
            raise ValueError(f"{captions_per_image} captions per image need {n * captions_per_image} text rows "
                             f"for {n} images, got {text_features.shape[0]}")
        if text_features.shape[0] != n * captions_per_image and self.gather and is_distributed():
            raise ValueError("hard-negative captions are not supported with a gathered multi-process batch")
        image_features, text_features = _gather_if_distributed(
            image_features, text_features, self.gather
        )
        logits_per_image = clip_logits(image_features, text_features, logit_scale)
        if captions_per_image > 1:
            return self._multi_caption_loss(logits_per_image, captions_per_image)
        # Column softmax = row softmax of the transpose; no second matmul needed. Hard-negative
        # columns (if any) are left out: they have no image to be matched with.
        logits_per_text = logits_per_image[:, : logits_per_image.shape[0]].T
        labels = self._targets(logits_per_image.shape[0], logits_per_image.device)
        loss_img = F.cross_entropy(logits_per_image, labels, label_smoothing=self.label_smoothing)
        loss_txt = F.cross_entropy(logits_per_text, labels, label_smoothing=self.label_smoothing)
        return (loss_img + loss_txt) / 2

    def _multi_caption_loss(self, logits_per_image: torch.Tensor, k: int) -> torch.Tensor:
        """Every caption of an image counts as its match. `logits_per_image` is `[N, N·K]`, image-major::

            L_img = -(1/N)  Σ_i Σ_{c of i} (1/K) log softmax_row_i(c)     one softmax over all N·K captions
            L_txt = -(1/NK) Σ_c log softmax_col_c(image of c)             N·K ordinary N-way classifications

        The image's target spreads evenly over its `K` captions (with label smoothing, `1 - e` of it does), so no
        caption of an image is pushed away as another image's would be; its best loss is log K, not 0. A
        gathered batch keeps this layout: rank r's images are rows r·n …, its captions rows r·n·K …"""
        n = logits_per_image.shape[0]
        owner = self._targets(n, logits_per_image.device, k)  # the image each caption describes
        targets = self._multi_caption_targets(n, k, logits_per_image.device, logits_per_image.dtype)
        loss_img = F.cross_entropy(logits_per_image, targets, label_smoothing=self.label_smoothing)
        loss_txt = F.cross_entropy(logits_per_image.T, owner, label_smoothing=self.label_smoothing)
        return (loss_img + loss_txt) / 2


class SigLipLoss(nn.Module):
    """SigLIP's pairwise sigmoid loss (Zhai et al. 2023, Algorithm 1).

    With `logits = scale · I Tᵀ + bias` (`N×N`) and targets `z_ij = +1` if
    `i = j` (a true pair) and `-1` otherwise::

        loss = -(1/N) Σ_i Σ_j log σ(z_ij · logits[i, j])

    Each entry is an independent logistic regression "are image i and text j a
    pair?", so no softmax normalisation couples a row, and the loss is normalised by
    the number of images `N` (not `N²`), as in the paper. `bias` is a learnable
    scalar that, together with the scale, calibrates the sigmoid; see
    `SIGLIP_INIT_LOGIT_SCALE` / `SIGLIP_INIT_LOGIT_BIAS` for the initial values.

    Distributed use mirrors `ClipLoss`: features are gathered with gradients
    and every rank computes the global-batch loss (`N` is then the global number of
    images). The paper (and open_clip) instead pass text chunks around a ring so no
    rank ever holds the full `N×N` matrix, which matters at batch size 32k but not
    here; the gradients after DDP's averaging are the same either way.
    """

    def __init__(self, gather: bool = True) -> None:
        super().__init__()
        self.gather = gather

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | float,
        logit_bias: torch.Tensor | float,
    ) -> torch.Tensor:
        """Return the scalar loss for L2-normalised `[N, D]` features, `exp(t)` and `b`."""
        image_features, text_features = _gather_if_distributed(
            image_features, text_features, self.gather
        )
        logits = clip_logits(image_features, text_features, logit_scale) + logit_bias
        n = logits.shape[0]
        # z = 2·eye - 1: +1 on the diagonal, -1 elsewhere.
        targets = 2 * torch.eye(n, device=logits.device, dtype=logits.dtype) - 1
        # logsigmoid is the stable form of log(1 / (1 + exp(-x))): it never forms
        # exp of a large positive number, which matters once scale·cos + bias ≈ ±20.
        return -F.logsigmoid(targets * logits).sum() / n


class SimClrLoss(nn.Module):
    """SimCLR's NT-Xent loss (Chen et al. 2020) on two views of each image: SLIP's image-only objective.

    With `a`, `b` the L2-normalised `[N, D]` projections of two augmentations of the same `N` images, stack them
    into `z = [a; b]` (`2N` rows). Each row's positive is its other view; the other `2N − 2` rows are its
    negatives; a row is never compared with itself::

        loss = -(1/2N) Σ_i log( exp(z_i · z_p(i) / τ) / Σ_{j ≠ i} exp(z_i · z_j / τ) )

    where `p(i)` is `i + N` for the first half and `i − N` for the second, and `τ` the temperature (SLIP: 0.1).
    Local to each process (no gather): the images' own views make the task, and `N` per rank suffices here.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n = a.shape[0]
        z = torch.cat([a, b])
        logits = z @ z.T / self.temperature
        logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
        positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return F.cross_entropy(logits, positives)
