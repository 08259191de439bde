"""The real CLIP weights (OpenAI's, or open_clip's other pretrained tags) in our own `CLIP` model.

Comparisons with the released model (CIFAR-100 zero-shot, multilingual prompts) need its weights. We let
open_clip find and cache them, because it knows where every tag lives, and then build *our* model from the
state dict with `miniclip.build_model` (strict: every tensor must fit). open_clip is only the
downloader here; none of its model code runs.

Why only safetensors. OpenAI's own files (`ViT-B-32.pt`) are TorchScript archives, and open_clip's
`open_clip_pytorch_model.bin` files are pickles: loading either in full runs the pickle machinery, which
can execute code hidden in the file. open_clip mirrors the OpenAI weights on the Hugging Face hub
(`timm/vit_base_patch32_clip_224.openai`) together with an `open_clip_model.safetensors`, which holds
nothing but tensors, so that is the file we ask for, and the only format we read: a tag published only as
a URL to a `.pt` file is refused with a message that says why, rather than unpickled.

Offline is an expected state, not a crash: without a cached copy and without network access `load`
raises `PretrainedUnavailable`, whose message names the command that fetches the file.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

import torch
from safetensors.torch import load_file

from miniclip.data.transforms import OPENAI_MEAN, OPENAI_STD
from miniclip.errors import UserError
from miniclip.model import CLIP, build_model

SAFETENSORS_NAME = "open_clip_model.safetensors"  # open_clip's name for its safetensors files on the hub
CONNECT_TIMEOUT_S = 3.0  # how long we wait to learn whether the hub is reachable at all


class PretrainedUnavailable(UserError, RuntimeError):
    """The requested pretrained weights are neither cached nor downloadable (offline, unknown, or unsafe)."""


@dataclass(frozen=True)
class PretrainedInfo:
    """What to know about loaded pretrained weights: where they came from and how images must be prepared
    (the resolution and the normalisation they were trained with)."""

    name: str
    tag: str
    path: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    quick_gelu: bool


def _open_clip():
    try:
        import open_clip  # optional (the test extra): only a downloader of released weights here
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise PretrainedUnavailable("loading pretrained weights needs open_clip (only as a downloader): "
                                    "pip install open_clip_torch") from e
    return open_clip


def fetch_command(name: str, tag: str) -> str:
    """The shell command that downloads the weights into open_clip's cache (on a machine with internet)."""
    return f"python -c \"import miniclip.eval.pretrained as p; p.load('{name}', '{tag}')\""


def parse_spec(spec: str) -> tuple[str, str] | None:
    """`"openai:ViT-B-32"` -> `("ViT-B-32", "openai")`: a pretrained spec is TAG:MODEL, where TAG is one of
    open_clip's pretrained tags for MODEL. None for anything else (e.g. a checkpoint path)."""
    tag, sep, name = str(spec).partition(":")
    if not sep or not tag or not name or os.path.exists(spec):
        return None
    return (name, tag) if _open_clip().pretrained.is_pretrained_cfg(name, tag) else None


def _pretrained_cfg(name: str, tag: str) -> dict:
    oc = _open_clip()
    cfg = oc.pretrained.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = oc.pretrained.list_pretrained_tags_by_model(name)
        hint = f"tags for {name}: {', '.join(tags)}" if tags else "see open_clip.list_pretrained()"
        raise PretrainedUnavailable(f"open_clip has no pretrained weights {name!r} with tag {tag!r} ({hint})")
    return cfg


def _reachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout` seconds. Checked first so that an
    offline machine gets a clear error in seconds, not after the downloader's retries."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_safetensors(hub: str) -> tuple[str, str] | None:
    """open_clip's hub entry ("org/repo/" or "org/repo/file.bin") -> (repo id, the safetensors file to ask for),
    following open_clip's naming of safetensors alternatives; None when the entry names another format."""
    model_id, filename = os.path.split(hub)
    if not filename:
        return model_id, SAFETENSORS_NAME
    stem, ext = os.path.splitext(filename)
    if ext == ".safetensors":
        return model_id, filename
    return (model_id, stem + ".safetensors") if ext in (".bin", ".pth") else None


def _hub_file(model_id: str, filename: str, cache_dir: str | None, download: bool) -> str | None:
    """The safetensors file of a hub repo: from the cache, else (if allowed and reachable) downloaded through
    open_clip's own function, into the usual Hugging Face cache. None when neither works."""
    # optional: huggingface_hub comes with open_clip (the test extra), which only this path needs
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(model_id, filename, cache_dir=cache_dir)
    if isinstance(cached, str):
        return cached
    if not download or constants.HF_HUB_OFFLINE or not _reachable(constants.ENDPOINT):
        return None
    try:
        return _open_clip().pretrained.download_pretrained_from_hf(model_id, filename=filename,
                                                                   cache_dir=cache_dir)
    except Exception:  # the hub answers but has no such file, or the transfer failed
        return None


def weights_file(name: str = "ViT-B-32", tag: str = "openai", cache_dir: str | None = None,
                 download: bool = True) -> str:
    """Path to the weights of open_clip model `name` with pretrained `tag`, cached or downloaded now.

    Only the hub's safetensors file is used. Raises `PretrainedUnavailable` when the tag has none (a
    URL-only `.pt` release), or with the command that fetches it when it is not cached and cannot be
    downloaded now.
    """
    cfg = _pretrained_cfg(name, tag)
    hub = _hub_safetensors(cfg["hf_hub"]) if cfg.get("hf_hub") else None
    if hub:
        path = _hub_file(*hub, cache_dir, download)
        if path:
            return path
    if not hub:
        raise PretrainedUnavailable(
            f"pretrained weights {name} ({tag}) are published only as {cfg.get('url') or 'a pickle'}, not as "
            f"safetensors; this project does not unpickle weight files. Pick a tag with a Hugging Face hub copy "
            f"(open_clip.list_pretrained() lists them).")
    where = f"the Hugging Face hub ({hub[0]}/{hub[1]})" if hub else cfg.get("url", "?")
    raise PretrainedUnavailable(
        f"pretrained weights {name} ({tag}) are not cached here and cannot be downloaded now (no network, or "
        f"HF_HUB_OFFLINE is set). They come from {where}. On a machine with internet, fetch them into the cache "
        f"with:\n    {fetch_command(name, tag)}\nthen copy the Hugging Face cache (~/.cache/huggingface) here.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors weights file. Any other format is refused: reading a `.pt`/`.bin` means
    running the pickle machinery, which can execute code hidden in the file."""
    path = str(path)
    if not path.endswith(".safetensors"):
        raise PretrainedUnavailable(
            f"{path} is not a safetensors file; this project does not unpickle weight files (.pt, .bin, "
            f"TorchScript). Use the safetensors copy on the Hugging Face hub, or convert the file with a tool "
            f"you trust.")

    return load_file(path)


def model_from_file(path: str | os.PathLike, quick_gelu: bool, device: str | torch.device = "cpu") -> CLIP:
    """Our CLIP from an OpenAI- or open_clip-format weights file, loaded strictly, in fp32 and eval mode."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(path).items()}
    return build_model(state, quick_gelu=quick_gelu).to(device).eval()


def load(name: str = "ViT-B-32", tag: str = "openai", device: str | torch.device = "cpu",
         cache_dir: str | None = None, download: bool = True) -> tuple[CLIP, PretrainedInfo]:
    """The pretrained open_clip model `name` with weights `tag` as our `CLIP`,
    and a `PretrainedInfo` (the file, image size, normalisation and activation).

    `load("ViT-B-32", "openai")` is OpenAI's released ViT-B/32. The activation is not in the weights:
    OpenAI's models (and open_clip's "-quickgelu" names) use QuickGELU, the rest GELU; open_clip's pretrained
    config says which. Raises `PretrainedUnavailable` when the weights cannot be had.
    """
    cfg = _pretrained_cfg(name, tag)
    quick_gelu = bool(cfg.get("quick_gelu", False)) or name.endswith("-quickgelu")
    path = weights_file(name, tag, cache_dir, download)
    model = model_from_file(path, quick_gelu, device)
    info = PretrainedInfo(name=name, tag=tag, path=str(path), image_size=model.config.image_size,
                          mean=tuple(cfg.get("mean") or OPENAI_MEAN), std=tuple(cfg.get("std") or OPENAI_STD),
                          quick_gelu=quick_gelu)
    return model, info
