"""Retrieval recall and zero-shot accuracy against brute-force counts written independently."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from miniclip.eval.probes import retrieval_recall
from miniclip.eval.zeroshot import topk_accuracy


def brute_force_recall(sim: np.ndarray, text_to_image: np.ndarray, k: int) -> tuple[float, float]:
    n_img, n_txt = sim.shape
    t2i = []
    for t in range(n_txt):
        own = sim[text_to_image[t], t]
        better_or_equal = sum(1 for i in range(n_img) if i != text_to_image[t] and sim[i, t] >= own)
        t2i.append(better_or_equal < k)
    i2t = []
    for i in range(n_img):
        own = [t for t in range(n_txt) if text_to_image[t] == i]
        if not own:  # an image without captions can retrieve nothing: a miss
            i2t.append(False)
            continue
        best = max(sim[i, t] for t in own)
        better_or_equal = sum(1 for t in range(n_txt) if text_to_image[t] != i and sim[i, t] >= best)
        i2t.append(better_or_equal < k)
    return float(np.mean(t2i)), float(np.mean(i2t))


def test_retrieval_recall_matches_a_brute_force_count_including_ties():
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(12, 8, generator=g), dim=-1)
    text_to_image = torch.arange(12).repeat_interleave(3)[:34]  # uneven: the last image has one caption
    texts = F.normalize(images[text_to_image] + 0.8 * torch.randn(34, 8, generator=g), dim=-1)
    texts[5] = texts[4]  # exact ties between captions
    images = torch.cat([images, images[:1]])  # and a duplicated image with no caption of its own
    sim = (images @ texts.t()).numpy()
    got = retrieval_recall(images, texts, text_to_image, ks=(1, 2, 5))
    for k in (1, 2, 5):
        t2i, i2t = brute_force_recall(sim, text_to_image.numpy(), k)
        assert np.isclose(got[f"text_to_image_R@{k}"], t2i)
        # the caption-less duplicate has no caption to retrieve: brute force counts it as a miss too
        assert np.isclose(got[f"image_to_text_R@{k}"], i2t)


def test_constant_features_get_chance_not_perfect_recall():
    images, texts = torch.ones(10, 4) / 2, torch.ones(10, 4) / 2
    got = retrieval_recall(images, texts, torch.arange(10), ks=(1, 10))
    assert got["text_to_image_R@1"] == 0 and got["text_to_image_R@10"] == 1.0


def test_topk_accuracy_matches_numpy():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(50, 7)), rng.integers(0, 7, size=50)
    order = np.argsort(-logits, axis=1)
    for k in (1, 3, 5):
        expected = np.mean([labels[i] in order[i, :k] for i in range(50)])
        got = topk_accuracy(torch.tensor(logits), torch.tensor(labels), ks=(k,))[f"top{k}"]
        assert np.isclose(got, expected)


def test_eval_has_nested_zeroshot_and_retrieval_subcommands():
    from miniclip.cli import build_parser
    from miniclip.cli.eval import run_retrieval, run_zeroshot

    parser = build_parser()
    args = parser.parse_args(["eval", "retrieval", "--checkpoint", "c.safetensors", "--data", "flickr8k"])
    assert args.func is run_retrieval and args.split == "test" and not args.json
    args = parser.parse_args(["eval", "zeroshot", "--checkpoint", "openai:ViT-B-32", "--data", "cifar100",
                              "--templates", "cifar", "--lang", "en+fr+de", "--json"])
    assert args.func is run_zeroshot and args.lang == "en+fr+de" and args.templates == "cifar" and args.json


def test_every_command_has_working_help(capsys):
    """`--help` of every command and sub-command renders (argparse formats help strings with %, so a stray
    percent sign in a help text only fails when someone asks for help)."""
    import argparse

    from miniclip.cli import build_parser

    def walk(parser, path):
        yield path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*path, name])

    paths = list(walk(build_parser(), []))
    assert ["eval", "probe"] in paths and ["train"] in paths
    for path in paths:
        parser = build_parser()
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([*path, "--help"])
        assert exit_info.value.code == 0, path
        assert "usage:" in capsys.readouterr().out
