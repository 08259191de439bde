"""Zero-shot classification (§3.1): a classifier whose weights are the text embeddings of the class names.

For each class, every template ("a photo of a {}.") is filled in with the class name and encoded; each
embedding is L2-normalised, the class's embeddings are averaged over templates, and the mean is normalised
again (§3.1.4, "prompt ensembling"). An image is then assigned the class whose weight vector has the
largest cosine similarity with its embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from miniclip.tokenizer import tokenize

SIMPLE_TEMPLATES = ("a photo of a {}.",)

# The 18 templates OpenAI's CLIP repository lists for CIFAR-10 and CIFAR-100.
CIFAR_TEMPLATES = (
    "a photo of a {}.", "a blurry photo of a {}.", "a black and white photo of a {}.",
    "a low contrast photo of a {}.", "a high contrast photo of a {}.", "a bad photo of a {}.",
    "a good photo of a {}.", "a photo of a small {}.", "a photo of a big {}.", "a photo of the {}.",
    "a blurry photo of the {}.", "a black and white photo of the {}.", "a low contrast photo of the {}.",
    "a high contrast photo of the {}.", "a bad photo of the {}.", "a good photo of the {}.",
    "a photo of the small {}.", "a photo of the big {}.",
)


@torch.no_grad()
def encode_texts(model, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text embeddings [len(texts), D], in batches."""
    device = next(model.parameters()).device
    context = model.config.context_length
    out = [F.normalize(model.encode_text(tokenize(texts[i:i + batch_size], context).to(device)).float(), dim=-1)
           for i in range(0, len(texts), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def classifier_weights(model, class_names: list[str], templates=SIMPLE_TEMPLATES) -> torch.Tensor:
    """[C, D]: per class, the renormalised mean of its normalised template embeddings."""
    prompts = [t.format(name) for name in class_names for t in templates]
    emb = encode_texts(model, prompts).view(len(class_names), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


@torch.no_grad()
def encode_images(model, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings [N, D], in batches."""
    device = next(model.parameters()).device
    out = [F.normalize(model.encode_image(images[i:i + batch_size].to(device)).float(), dim=-1)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Fraction of rows whose label is among the k highest scores, for each k (capped at the class count)."""
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == labels.to(ranked.device)[:, None]
    return {f"top{k}": hits[:, :k].any(dim=1).float().mean().item() for k in ks}


TEMPLATE_SETS = {"simple": SIMPLE_TEMPLATES, "cifar": CIFAR_TEMPLATES}


@torch.no_grad()
def encode_dataset(model, dataset, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised image features of every (image, label) item of `dataset`, and the labels. Items that
    fail to decode (None) are dropped by the collate function and counted there."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from miniclip.data.transforms import PairCollator

    collate = PairCollator()
    feats, labels = [], []
    for images, y in tqdm(DataLoader(dataset, batch_size=batch_size, collate_fn=collate), desc="encoding images",
                          leave=False):
        if len(images):
            feats.append(encode_images(model, images, batch_size))
            labels.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(labels)


def evaluate_zeroshot(model, dataset, class_names: list[str], templates=SIMPLE_TEMPLATES) -> dict:
    """Top-1/top-5 accuracy and per-class top-1 of zero-shot classification on a labelled image dataset."""
    image_features, labels = encode_dataset(model, dataset)
    logits = image_features @ classifier_weights(model, class_names, templates).t()
    result = topk_accuracy(logits, labels)
    hits = logits.argmax(1) == labels
    result["per_class"] = {name: hits[labels == c].float().mean().item() for c, name in enumerate(class_names)
                           if (labels == c).any()}
    result.update(n=len(labels), classes=len(class_names), templates=len(templates), chance=1 / len(class_names))
    return result
