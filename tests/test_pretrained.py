"""Loading open_clip's pretrained weights into our CLIP, without the network: a randomly initialised open_clip
model stands in for the download, and the offline path must fail with a message that says what to run."""

import json

import huggingface_hub
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import miniclip.eval.pretrained as pretrained
from miniclip.bench.reference import small_vit_open_clip
from miniclip.cli import main
from miniclip.data.transforms import OPENAI_MEAN
from miniclip.tokenizer import tokenize


@pytest.fixture(scope="module")
def reference_and_file(tmp_path_factory):
    """A small random open_clip ViT and its weights as the safetensors file the hub would serve."""
    reference = small_vit_open_clip(quick_gelu=True)
    path = tmp_path_factory.mktemp("hub") / pretrained.SAFETENSORS_NAME
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    return reference, path


def assert_same_features(ours, reference):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 64, 64, generator=g)
    text = tokenize(["a photo of a cat", "ein Foto von einem Hund"])
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(images), reference.encode_image(images), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.encode_text(text), reference.encode_text(text), rtol=1e-4, atol=1e-5)


@pytest.fixture
def offline_downloads(monkeypatch):
    """No network: open_clip's downloaders must not even be called."""
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download in a test")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_hf", refuse)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url", refuse)
    monkeypatch.setattr(pretrained, "_reachable", lambda *a, **k: False)


def test_converted_weights_give_open_clip_s_features(reference_and_file):
    reference, path = reference_and_file
    assert_same_features(pretrained.model_from_file(path, quick_gelu=True), reference)


def test_load_finds_the_cached_hub_file(monkeypatch, reference_and_file, offline_downloads):
    reference, path = reference_and_file
    asked = []

    def cache(repo_id, filename, cache_dir=None, **kwargs):
        asked.append((repo_id, filename))
        return str(path)

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", cache)
    model, info = pretrained.load("ViT-B-32", "openai")
    assert asked == [("timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors")]  # never the pickle
    assert info.quick_gelu and info.mean == OPENAI_MEAN and info.image_size == 64 and info.path == str(path)
    assert_same_features(model, reference)


def test_offline_and_uncached_raises_with_the_fetch_command(monkeypatch, tmp_path, offline_downloads):
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(pretrained.PretrainedUnavailable) as e:
        pretrained.load("ViT-B-32", "openai", cache_dir=str(tmp_path))
    assert pretrained.fetch_command("ViT-B-32", "openai") in str(e.value)
    assert "timm/vit_base_patch32_clip_224.openai" in str(e.value)


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(pretrained.PretrainedUnavailable, match="openai"):
        pretrained.load("ViT-B-32", "no-such-tag", download=False)


class NotATensor:
    pass


def test_pickled_objects_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"visual.proj": torch.zeros(2), "payload": NotATensor()}, path)
    with pytest.raises(pretrained.PretrainedUnavailable, match="does not unpickle"):
        pretrained.read_state_dict(path)


def test_parse_spec(tmp_path):
    assert pretrained.parse_spec("openai:ViT-B-32") == ("ViT-B-32", "openai")
    assert pretrained.parse_spec(str(tmp_path / "final.safetensors")) is None
    assert pretrained.parse_spec("nonsense:ViT-B-32") is None


def test_cli_evaluates_a_pretrained_spec(monkeypatch, capsys, tmp_path, reference_and_file, offline_downloads):
    _, path = reference_and_file
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: str(path))
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    assert main(["eval", "zeroshot", "--checkpoint", "openai:ViT-B-32", "--data", f"imagefolder:{tmp_path}",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 6 and result["classes"] == 2 and result["checkpoint"] == "openai:ViT-B-32"
