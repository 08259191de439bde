"""SLIP's image self-supervision (Mu et al. 2022, "SLIP: Self-supervision meets Language-Image Pre-training").

Besides the contrastive image-text loss, each image is augmented twice and the image tower must tell the two
views of the same image apart from the views of the other images of the batch: SimCLR's loss
(`miniclip.loss.SimClrLoss`) on a small projection head. SLIP found it raised a ViT-B/16's zero-shot and linear
probe accuracy on a few million pairs; the motivation here is a model that memorises its 6,000 training photos,
for which the views add an image-only task that caption-matching cannot shortcut.

Ours differs from SLIP in three declared ways, all to keep the step cheap on a CPU: two views in all (the first
is also the one the contrastive loss sees, where SLIP takes a third), the head reads the image embedding (after
CLIP's attention pool and projection, where SLIP reads the tower's pooled output), and the head is two layers.
"""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Sequential):
    """Image embedding `[N, D]` -> SSL projection `[N, out]` (normalised by the caller): Linear, ReLU, Linear."""

    def __init__(self, embed_dim: int, hidden: int = 512, out: int = 128):
        super().__init__(nn.Linear(embed_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))
