"""Similarity heatmaps: the matrix CLIP's loss is computed on (§2.3, Fig. 3), for one batch.

Each entry is the cosine similarity between an image embedding and a text embedding. Training pushes the
diagonal of a batch's image x caption matrix up and everything else down; zero-shot classification reads
the image x class-prompt matrix row by row.
"""

from __future__ import annotations

import torch

from miniclip.eval.zeroshot import SIMPLE_TEMPLATES, classifier_weights, encode_images, encode_texts


@torch.no_grad()
def image_text_similarity(model, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Cosine similarities [len(images), len(texts)] between normalised `images` and `texts`."""
    return encode_images(model, images) @ encode_texts(model, texts).t()


@torch.no_grad()
def image_class_similarity(model, images: torch.Tensor, class_names: list[str],
                           templates=SIMPLE_TEMPLATES) -> torch.Tensor:
    """Cosine similarities [len(images), classes] with the zero-shot classifier's (template-ensembled) weights."""
    return encode_images(model, images) @ classifier_weights(model, class_names, templates).t()
