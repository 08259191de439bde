"""Maps of the embedding space: image and text embeddings together, projected to 2-D (paper, Appendix C).

CLIP puts images and texts in one space, so both can be drawn on one map. t-SNE (scikit-learn) keeps local
neighbourhoods; UMAP (umap-learn) keeps somewhat more of the global layout. Both are run on the
L2-normalised embeddings with cosine distance, which is what CLIP itself compares. One thing such maps
show at once is the *modality gap*: images and texts usually form two separate clouds, because the
contrastive loss only fixes angles within each pair, not where each modality sits as a whole.

The "ambiguous pairs" view picks Flickr8k images whose captions mention the beach, the sea or water, words
whose pictures overlap (a beach photo is often also a sea photo), and colours each point by its word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.manifold import TSNE
from torch.utils.data import Subset

from miniclip.errors import MissingDependency
from miniclip.eval.features import encode_dataset_images
from miniclip.eval.zeroshot import encode_texts

AMBIGUOUS_WORDS = ("beach", "ocean", "water", "sea", "sand")


@dataclass
class EmbeddingMap:
    """2-D coordinates of image and text embeddings together.

    `coords` [N, 2]; `modality[i]` is "image" or "text"; `labels[i]` is any per-point label (a class,
    a caption word) or "" when none was given; `method` is "tsne" or "umap"."""

    coords: np.ndarray
    modality: np.ndarray
    labels: np.ndarray
    method: str

    def where(self, modality: str) -> np.ndarray:
        return self.modality == modality


def project_2d(features: np.ndarray | torch.Tensor, method: str = "tsne", seed: int = 0, **kwargs) -> np.ndarray:
    """[N, D] features -> [N, 2] coordinates with t-SNE or UMAP under cosine distance, seeded.

    `kwargs` go to `sklearn.manifold.TSNE` or `umap.UMAP` (e.g. `perplexity`, `n_neighbors`). Small inputs
    get a perplexity / neighbour count that fits them instead of an error."""
    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float32)
    n = len(x)
    if n < 4:
        raise ValueError(f"need at least 4 points to make a map, got {n}")
    if method == "tsne":
        kwargs.setdefault("perplexity", min(30.0, (n - 1) / 3))  # t-SNE requires perplexity < n
        tsne = TSNE(n_components=2, metric="cosine", init="pca", random_state=seed, **kwargs)
        return tsne.fit_transform(x)
    if method == "umap":
        try:
            import umap  # optional (the book extra): only UMAP maps need it
        except ImportError as e:
            raise MissingDependency("UMAP maps need umap-learn, which is not installed (pip install umap-learn, "
                                    "or use method='tsne')") from e
        kwargs.setdefault("n_neighbors", min(15, n - 1))
        # A fixed random_state makes UMAP deterministic, which a book needs; it also makes it single-threaded
        # (said explicitly, so umap-learn does not warn about it). The first call JIT-compiles (numba): slow once.
        kwargs.setdefault("n_jobs", 1)
        reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed, **kwargs)
        return reducer.fit_transform(x)
    raise ValueError(f"unknown method {method!r}; choose 'tsne' or 'umap'")


def joint_embedding_map(image_features: torch.Tensor, text_features: torch.Tensor, *,
                        image_labels=None, text_labels=None, method: str = "tsne", seed: int = 0,
                        **kwargs) -> EmbeddingMap:
    """Project image and text embeddings together (one fit, so their positions are comparable)."""
    features = torch.cat([image_features.float().cpu(), text_features.float().cpu()])
    n_img, n_txt = len(image_features), len(text_features)
    labels = np.array(list(image_labels if image_labels is not None else [""] * n_img)
                      + list(text_labels if text_labels is not None else [""] * n_txt), dtype=object)
    if len(labels) != n_img + n_txt:
        raise ValueError("image_labels / text_labels must have one entry per image / text")
    modality = np.array(["image"] * n_img + ["text"] * n_txt)
    return EmbeddingMap(project_2d(features, method, seed, **kwargs), modality, labels, method)


def first_word(caption: str, words=AMBIGUOUS_WORDS) -> str | None:
    """The first of `words` (as a whole word, any case) that occurs in `caption`, in caption order."""
    found = re.search(r"\b(" + "|".join(map(re.escape, words)) + r")\b", caption.lower())
    return found.group(1) if found else None


def ambiguous_pairs(captions_per_image: list[list[str]], words=AMBIGUOUS_WORDS, max_images: int | None = None):
    """Select the images whose captions mention one of `words` (beach, ocean, water, sea, sand).

    Returns `(image_indices, image_labels, captions, caption_labels)`: each selected image is labelled with
    the word its captions use most often (ties: the earliest in `words`); each of its captions that
    mentions a word contributes one text point, labelled with that word. Images come in dataset order."""
    indices, image_labels, captions, caption_labels = [], [], [], []
    for i, image_captions in enumerate(captions_per_image):
        hits = [(c, first_word(c, words)) for c in image_captions]
        hits = [(c, w) for c, w in hits if w]
        if not hits:
            continue
        counts = {w: sum(word == w for _, word in hits) for w in words}
        indices.append(i)
        image_labels.append(max(words, key=lambda w: counts[w]))  # max keeps the first of equal counts
        for c, w in hits:
            captions.append(c)
            caption_labels.append(w)
        if max_images is not None and len(indices) >= max_images:
            break
    return indices, image_labels, captions, caption_labels


def flickr8k_ambiguous_map(model, dataset, *, method: str = "tsne", words=AMBIGUOUS_WORDS,
                           max_images: int = 300, seed: int = 0, **kwargs) -> EmbeddingMap:
    """The ambiguous-pairs map on a Flickr8k split (eval mode, with the model's eval transform): selected
    images and their matching captions, embedded by `model` and projected together."""
    indices, image_labels, captions, caption_labels = ambiguous_pairs(dataset.captions, words, max_images)
    if not indices:
        raise ValueError(f"no caption of {dataset!r} mentions any of {words}")
    image_features = encode_dataset_images(model, Subset(dataset, indices))
    return joint_embedding_map(image_features, encode_texts(model, captions), image_labels=image_labels,
                               text_labels=caption_labels, method=method, seed=seed, **kwargs)
