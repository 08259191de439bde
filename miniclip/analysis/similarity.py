"""Similarity heatmaps: the matrix CLIP's loss is computed on (§2.3, Fig. 3), for one batch.

Each entry is the cosine similarity between an image embedding and a text embedding. Training pushes the
diagonal of a batch's image x caption matrix up and everything else down; zero-shot classification reads
the image x class-prompt matrix row by row. Also here: `encode_dataset_images`, which embeds every image of
a dataset in order (the bias and limitation probes need the features aligned with the dataset's items).
"""

from __future__ import annotations

import torch

from miniclip.zeroshot import SIMPLE_TEMPLATES, classifier_weights, encode_images, encode_texts


@torch.no_grad()
def image_text_similarity(model, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Cosine similarities [len(images), len(texts)] between normalised ``images`` and ``texts``."""
    return encode_images(model, images) @ encode_texts(model, texts).t()


@torch.no_grad()
def image_class_similarity(model, images: torch.Tensor, class_names: list[str],
                           templates=SIMPLE_TEMPLATES) -> torch.Tensor:
    """Cosine similarities [len(images), classes] with the zero-shot classifier's (template-ensembled) weights."""
    return encode_images(model, images) @ classifier_weights(model, class_names, templates).t()


@torch.no_grad()
def encode_dataset_images(model, dataset, batch_size: int = 128, desc: str = "encoding images") -> torch.Tensor:
    """Normalised embeddings [len(dataset), D] of every image of a dataset whose items are ``(image, …)``.

    Unlike `miniclip.zeroshot.encode_dataset`, nothing may be dropped: row i must be item i, because
    the caller pairs rows with the dataset's captions. An undecodable image is an error that names it."""
    from tqdm.auto import tqdm

    features = []
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, leave=False):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        bad = [start + j for j, item in enumerate(items) if item is None]
        if bad:
            raise RuntimeError(f"images {bad[:5]} of {dataset!r} could not be decoded; this analysis needs all")
        features.append(encode_images(model, torch.stack([item[0] for item in items]), batch_size))
    return torch.cat(features)
