"""Measuring the representation: retrieval (and, as the book grows, linear and few-shot probes).

Retrieval on Flickr8k's test split uses all five captions of every image: text→image asks, for each
caption, whether its image is among the k images most similar to it; image→text asks, for each image,
whether any of its captions is among the k most similar captions.
"""

from __future__ import annotations

import torch


def retrieval_recall(image_features: torch.Tensor, text_features: torch.Tensor, text_to_image: torch.Tensor,
                     ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways from normalised features; `text_to_image[t]` is the index of caption t's image.

    Ties count against the model: a wrong item that scores exactly as high as the right one is ranked
    before it, so a constant model gets recall k/N, not 100%."""
    sim = image_features @ text_features.t()  # [images, texts]
    text_to_image = text_to_image.to(sim.device)
    n_images, n_texts = sim.shape
    # text -> image: how many images score at least as high as the caption's own image (the rest of its rank)
    own = sim[text_to_image, torch.arange(n_texts, device=sim.device)]
    t2i_rank = (sim >= own[None, :]).sum(0) - 1
    # image -> text: the best-scoring caption of the image, against every caption of other images
    is_own = text_to_image[None, :] == torch.arange(n_images, device=sim.device)[:, None]
    best_own = sim.masked_fill(~is_own, float("-inf")).amax(1)
    i2t_rank = ((sim >= best_own[:, None]) & ~is_own).sum(1)
    out = {}
    for k in ks:
        out[f"text_to_image_R@{k}"] = (t2i_rank < k).float().mean().item()
        out[f"image_to_text_R@{k}"] = (i2t_rank < k).float().mean().item()
    return out


@torch.no_grad()
def evaluate_retrieval(model, dataset, ks=(1, 5, 10), batch_size: int = 256) -> dict:
    """Flickr8k-style retrieval: `dataset` yields (image, caption) and has `caption_texts()` and
    `caption_image_index()` listing every caption of every image."""
    from miniclip.zeroshot import encode_images, encode_texts

    images = []
    for i in range(0, len(dataset), batch_size):
        items = [dataset[j] for j in range(i, min(i + batch_size, len(dataset)))]
        if any(item is None for item in items):
            raise RuntimeError("an image of the retrieval set could not be decoded; retrieval needs every image")
        images.append(encode_images(model, torch.stack([im for im, _ in items])))
    image_features = torch.cat(images)
    text_features = encode_texts(model, dataset.caption_texts())
    result = retrieval_recall(image_features, text_features, torch.tensor(dataset.caption_image_index()), ks)
    result.update(images=len(image_features), captions=len(text_features))
    return result
