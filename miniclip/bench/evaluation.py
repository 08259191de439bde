"""Evaluation throughput, with the package's own functions: zero-shot classification on CIFAR-10 test and
Flickr8k test retrieval, each end to end and for the model alone (`run_eval_bench`)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from miniclip.bench.results import RESULTS_DIR, write_results
from miniclip.checkpoint import load_model
from miniclip.config import load_config
from miniclip.data.flickr8k import Flickr8k
from miniclip.data.folders import open_test_set
from miniclip.data.paths import MissingDataError
from miniclip.data.transforms import eval_transform
from miniclip.env import machine, synchronize
from miniclip.eval.probes import evaluate_retrieval, retrieval_recall
from miniclip.eval.zeroshot import encode_images, evaluate_zeroshot
from miniclip.model import CLIP, CLIPConfig

# The cpu profile's Flickr8k model (a small ModifiedResNet): evaluated when its checkpoint exists, its
# architecture with random weights when not; the suite also times its training step (the ResNet path, where
# ours runs in channels_last, as the trainer runs it).
CPU_RESNET_CONFIG = "configs/cpu-flickr8k.yaml"
CPU_CHECKPOINT = "runs/cpu/flickr8k/final.safetensors"


def _eval_model(checkpoint: str | Path | CLIPConfig, device: str) -> tuple[CLIP, str]:
    """The model to evaluate: a checkpoint if it exists, else the cpu-profile architecture with random
    weights (throughput does not depend on the weights), or the given `CLIPConfig`."""
    if isinstance(checkpoint, CLIPConfig):
        return CLIP(checkpoint).to(device).eval(), "random weights (given config)"
    if Path(checkpoint).exists():
        return load_model(checkpoint, device).eval(), str(checkpoint)
    return CLIP(load_config(CPU_RESNET_CONFIG).model).to(device).eval(), f"random weights ({CPU_RESNET_CONFIG})"


def run_eval_bench(checkpoint: str | Path | CLIPConfig = CPU_CHECKPOINT, zeroshot_images: int = 1000,
                   retrieval_images: int | None = None, device: str = "cpu",
                   out_dir: Path | None = RESULTS_DIR) -> dict:
    """Throughput of evaluation, with the package's own functions: zero-shot classification on CIFAR-10 test
    (decode, preprocess, encode, classify) and Flickr8k test retrieval (encode every image and caption, then
    R@K), each end to end and for the model alone."""
    model, source = _eval_model(checkpoint, device)
    size, dev = model.config.image_size, torch.device(device)
    results = {"environment": machine(), "model": source, "image_size": size}

    images = torch.randn(256, 3, size, size)
    encode_images(model, images[:8])  # warm-up
    t0 = time.perf_counter()
    encode_images(model, images)
    synchronize(dev)
    results["encode_images_per_s"] = len(images) / (time.perf_counter() - t0)

    try:
        dataset = open_test_set("cifar10", eval_transform(size))
        subset = Subset(dataset, range(min(zeroshot_images, len(dataset))))
        t0 = time.perf_counter()
        zs = evaluate_zeroshot(model, subset, dataset.class_names)
        seconds = time.perf_counter() - t0
        results["zeroshot"] = {"dataset": "cifar10 test", "images": zs["n"], "seconds": seconds,
                               "images_per_s": zs["n"] / seconds, "top1": zs["top1"]}
    except MissingDataError as e:
        results["zeroshot"] = {"skipped": str(e)}

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = Flickr8k(split="test", transform=eval_transform(size), train=False)
        if retrieval_images:
            dataset.keep_first(retrieval_images)
        t0 = time.perf_counter()
        rr = evaluate_retrieval(model, dataset)
        seconds = time.perf_counter() - t0
        results["retrieval"] = {"dataset": "flickr8k test", "images": rr["images"], "captions": rr["captions"],
                                "seconds": seconds, "images_per_s": rr["images"] / seconds,
                                "text_to_image_R@10": rr["text_to_image_R@10"]}
        n_img, n_txt = rr["images"], rr["captions"]
    except MissingDataError as e:
        results["retrieval"] = {"skipped": str(e)}
        n_img, n_txt = 1000, 5000  # Flickr8k test's size, for the R@K computation alone
    # The R@K computation alone, on random normalised features of the same shapes.
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(n_img, model.config.embed_dim, generator=g), dim=-1).to(dev)
    txt = F.normalize(torch.randn(n_txt, model.config.embed_dim, generator=g), dim=-1).to(dev)
    index = torch.arange(n_txt) * n_img // n_txt
    t0 = time.perf_counter()
    retrieval_recall(img, txt, index)
    synchronize(dev)
    results["recall_at_k_s"] = time.perf_counter() - t0
    results["recall_at_k_shape"] = [n_img, n_txt]
    print(f"model alone: {results['encode_images_per_s']:.0f} images/s; " + "; ".join(
        f"{k}: {v['images_per_s']:.0f} images/s end to end" for k, v in results.items()
        if isinstance(v, dict) and "images_per_s" in v) + f"; R@K on {n_img}x{n_txt}: {results['recall_at_k_s']:.3f} s")
    if out_dir is not None:
        results["path"] = str(write_results(results, out_dir, f"eval-{device}.json"))
    return results
