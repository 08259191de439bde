"""Training configuration: dataclasses loaded from YAML profiles in `configs/`, checked before anything runs.

A config has four sections: `model` (a `CLIPConfig`), `data`, `optim` and `train`. Every key is typed by its
dataclass field; an unknown key, a value of the wrong type or an impossible value fails at start with a
message that names the key, never halfway through a run. `--set section.key=value` overrides any key.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from miniclip.env import PROFILES
from miniclip.errors import UserError
from miniclip.model import CLIPConfig


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message names the offending key."""


PRECISIONS = ("fp32", "bf16", "fp16", "auto")
# The trainer's periodic zero-shot check (miniclip.eval.validator): auto picks shapes for a Shapes run and
# cifar10 otherwise; cifar10 and intel-scenes are read from the data root like `eval zeroshot --data` reads them.
ZEROSHOT_CHECKS = ("auto", "none", "shapes", "cifar10", "intel-scenes")


@dataclass
class DataConfig:
    dataset: str = "shapes"  # shapes | flickr8k | shards:<glob or brace pattern>
    num_workers: int = 0
    augment: bool = True  # random-resized-crop + flip on real photos
    crop_scale: tuple[float, float] = (0.5, 1.0)  # the area fraction a training crop keeps (real photos)
    color_jitter: float = 0.0  # real photos: brightness, contrast, saturation x a factor in [1 - s, 1 + s] (0: off)
    train_images: int = 0  # Flickr8k: train on the first N training images only (0: all), for data scaling
    # Flickr8k: each training image comes with this many of its (five) captions, all of them its matches in the
    # loss (1: one caption, a different one each epoch). The text tower then runs on K x batch_size captions.
    captions_per_image: int = 1
    word_dropout: float = 0.0  # Flickr8k: each word of a training caption left out with this probability (0: off)
    # Flickr8k: keep each training image decoded in memory after its first epoch (per loader worker), so later epochs
    # only crop and flip it: the same pixels, for memory (6,000 images drafted to 80 or 160 px: ~115 or ~460 MB).
    cache_images: bool = False
    # Real photos: the first `low_res_steps` steps at `low_res_size` px, cheaper, and the rest at model.image_size
    # (RECLIP's schedule; the position embeddings are resized to the smaller grid). 0 and 0: off.
    low_res_size: int = 0
    low_res_steps: int = 0
    val_size: int = 512  # held-out pairs for the validation loss
    zeroshot: str = "auto"  # periodic zero-shot check: auto | none | shapes | cifar10 | intel-scenes
    zeroshot_size: int = 500
    shapes: dict = field(default_factory=dict)  # ShapesConfig overrides, e.g. {lang_rates: {fr: 0.1}}
    shuffle_buffer: int = 2000  # shards only


@dataclass
class OptimConfig:
    batch_size: int = 128
    grad_cache_chunks: int = 1  # >1: the batch's negatives in k chunks of batch_size/k (GradCache)
    lr: float = 5e-4
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 100
    steps: int = 1000
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    max_logit_scale: float = 100.0
    # Label smoothing of both cross-entropies: each row's target keeps 1 - e on its pair and spreads e over the
    # batch, so the loss stops rewarding ever-sharper matches of the few thousand pairs it has seen.
    label_smoothing: float = 0.0
    # SLIP (Mu et al. 2022): a SimCLR loss on two augmented views of each image, added with this weight to the
    # contrastive loss (0: off; SLIP uses 1). The image tower then runs on twice the images per step. Real photos
    # only (Flickr8k or shards), and with grad_cache_chunks = 1.
    ssl_weight: float = 0.0
    ssl_temperature: float = 0.1

    @property
    def views(self) -> int:
        """Augmented views of each image a batch carries: two with the SSL loss, else one."""
        return 2 if self.ssl_weight > 0 else 1


@dataclass
class TrainConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # fp32 | bf16 | fp16 (fp16 only on CUDA, with a GradScaler) | auto: bf16 on a GPU that has it, fp16 on an
    # older GPU, fp32 on the CPU (whose bf16 matmuls are slow without AVX-512 BF16 or AMX)
    precision: str = "fp32"
    grad_checkpointing: bool = False
    compile: bool = False
    # The GPU speed items, each on by default and switchable so that `bench speed-items` can measure what each
    # buys (on the CPU none of them does anything): batches in page-locked memory, copied with non_blocking;
    # cuDNN's autotuner; TF32 matmuls in fp32 runs (Ampere and later); with data.num_workers > 0, a thread that
    # receives and tokenises the next batches while the GPU works; and tokens cut to the batch's longest caption
    # on the host, where the model would otherwise find that length on the GPU and wait for it (a host sync).
    pin_memory: bool = True
    cudnn_benchmark: bool = True
    tf32: bool = True
    prefetch: bool = True
    trim_on_host: bool = True
    log_every: int = 10
    val_every: int = 200
    save_every: int = 200
    max_bad_steps: int = 5  # stop after this many non-finite losses in a row
    tensorboard: bool = False  # also write metrics to <run>/tensorboard/ (needs the tensorboard package)
    # Start from these weights instead of random ones (a checkpoint path, e.g. runs/cpu/shapes/final, of the
    # same architecture): fine-tuning. Optimizer and schedule start afresh; a resumed run ignores it.
    init_from: str = ""
    # An exponential moving average of the weights (0: none; e.g. 0.995): validation and final.safetensors use
    # the average, which smooths the last steps' noise. The raw weights stay in last.* for resuming.
    ema_decay: float = 0.0


@dataclass
class Config:
    name: str = "run"
    profile: str = "ci"  # runs land in runs/<profile>/<name>/
    model: CLIPConfig = field(default_factory=CLIPConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "Config":
        checks = [
            ("profile", self.profile in PROFILES, f"must be one of {', '.join(PROFILES)}"),
            ("name", bool(self.name) and "/" not in self.name, "must be a non-empty name without '/'"),
            ("optim.batch_size", self.optim.batch_size >= 2,
             "must be at least 2 (a contrastive batch needs negatives)"),
            ("optim.grad_cache_chunks", self.optim.grad_cache_chunks >= 1
             and self.optim.batch_size % self.optim.grad_cache_chunks == 0, "must be >= 1 and divide optim.batch_size"),
            ("optim.lr", self.optim.lr > 0, "must be positive"),
            ("optim.weight_decay", self.optim.weight_decay >= 0, "must be >= 0"),
            ("optim.betas", all(0 <= b < 1 for b in self.optim.betas), "must lie in [0, 1)"),
            ("optim.eps", self.optim.eps > 0, "must be positive"),
            ("optim.steps", self.optim.steps >= 1, "must be >= 1"),
            ("optim.warmup_steps", 0 <= self.optim.warmup_steps <= self.optim.steps, "must lie in [0, optim.steps]"),
            ("optim.min_lr_ratio", 0 <= self.optim.min_lr_ratio <= 1, "must lie in [0, 1]"),
            ("optim.max_logit_scale", self.optim.max_logit_scale > 1, "must be > 1"),
            ("model.logit_scale_init", 1 <= self.model.logit_scale_init <= self.optim.max_logit_scale,
             "must lie in [1, optim.max_logit_scale] (it is 1/temperature; CLIP starts at 1/0.07 = 14.3)"),
            ("optim.label_smoothing", 0 <= self.optim.label_smoothing < 1, "must lie in [0, 1)"),
            ("optim.ssl_weight", self.optim.ssl_weight >= 0, "must be >= 0 (0 turns the image SSL loss off)"),
            ("optim.ssl_temperature", self.optim.ssl_temperature > 0, "must be positive"),
            ("optim.ssl_weight", self.optim.ssl_weight == 0 or (self.data.dataset != "shapes"
                                                                and self.optim.grad_cache_chunks == 1),
             "needs real photos (data.dataset flickr8k or shards:...) and optim.grad_cache_chunks = 1"),
            ("train.ema_decay", 0 <= self.train.ema_decay < 1, "must lie in [0, 1) (0 turns the average off)"),
            ("train.precision", self.train.precision in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
            ("train.device", self.train.device in ("auto", "cpu", "cuda") or self.train.device.startswith("cuda:"),
             "must be auto, cpu or cuda[:N]"),
            ("train.max_bad_steps", self.train.max_bad_steps >= 1, "must be >= 1"),
            ("data.dataset", self.data.dataset in ("shapes", "flickr8k") or self.data.dataset.startswith("shards:"),
             "must be shapes, flickr8k or shards:<pattern>"),
            ("data.zeroshot", self.data.zeroshot in ZEROSHOT_CHECKS, f"must be one of {', '.join(ZEROSHOT_CHECKS)}"),
            ("data.num_workers", self.data.num_workers >= 0, "must be >= 0"),
            ("data.train_images", self.data.train_images == 0 or (self.data.train_images >= self.optim.batch_size
                                                                 and self.data.dataset == "flickr8k"),
             "must be 0 (every image) or, with data.dataset flickr8k, at least optim.batch_size"),
            ("data.crop_scale", 0 < self.data.crop_scale[0] <= self.data.crop_scale[1] <= 1,
             "must be [low, high] with 0 < low <= high <= 1"),
            ("data.color_jitter", 0 <= self.data.color_jitter < 1, "must be in [0, 1)"),
            ("data.captions_per_image", self.data.captions_per_image == 1 or (
                2 <= self.data.captions_per_image <= 5 and self.data.dataset == "flickr8k"),
             "must be 1, or 2 to 5 with data.dataset flickr8k (its images have five captions)"),
            ("data.word_dropout", self.data.word_dropout == 0 or (0 < self.data.word_dropout < 1
                                                                 and self.data.dataset == "flickr8k"),
             "must be 0, or in (0, 1) with data.dataset flickr8k"),
            ("data.cache_images", not self.data.cache_images or self.data.dataset == "flickr8k",
             "works with data.dataset flickr8k only (Shapes are drawn afresh, shards are streamed)"),
            ("data.low_res_steps", (self.data.low_res_steps == 0) == (self.data.low_res_size == 0)
             and 0 <= self.data.low_res_steps < self.optim.steps and (self.data.low_res_steps == 0
                                                                     or self.data.dataset != "shapes"),
             "must be 0 with data.low_res_size = 0, or else below optim.steps, with real photos"),
            ("data.low_res_size", self.data.low_res_size == 0 or (
                0 < self.data.low_res_size < self.model.image_size
                and self.data.low_res_size % (self.model.patch_size if self.model.is_vit else 32) == 0),
             "must be 0, or below model.image_size and a multiple of 32 (ResNet) or model.patch_size (ViT)"),
            ("model.image_size", not self.model.is_vit or self.model.image_size % self.model.patch_size == 0,
             "must be a multiple of model.patch_size"),
            ("model.vision_width", (self.model.vision_width * (1 if self.model.is_vit else 32)) % self.model.head_width
             == 0, "must give whole attention heads (ViT: width, ResNet: 32 x width, a multiple of model.head_width)"),
            ("model.image_size", self.model.is_vit or self.model.image_size % 32 == 0,
             "must be a multiple of 32 for a ResNet (it downsamples 32x)"),
            ("model.text_width", self.model.text_width % self.model.head_width == 0,
             "must be a multiple of model.head_width"),
            ("model.text_pool", self.model.text_pool in ("eot", "first", "mean"), "must be eot, first or mean"),
            ("optim.grad_cache_chunks",
             self.optim.grad_cache_chunks == 1 or not self.data.shapes.get("swapped_negatives"),
             "must be 1 with data.shapes.swapped_negatives (hard-negative captions are not chunked)"),
        ]
        for key, ok, why in checks:
            if not ok:
                raise ConfigError(f"{key} = {_get(self, key)!r} {why}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> dict:
        """`to_dict` as a checkpoint's JSON stores it (tuples become lists), to compare with a saved config."""
        return json.loads(json.dumps(self.to_dict()))


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _coerce(value, tp, key: str):
    """Check (and gently convert) one YAML value against its field's type annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # e.g. int | tuple[int, int, int, int]
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key} = {value!r} matches none of {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key} = {value!r} must be a list of {len(args)} values")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:  # YAML reads "5e-4" (no dot) as a string
            return float(value)
        except (TypeError, ValueError):
            pass
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif tp is dict or origin is dict:
        if isinstance(value, dict):
            return value
    raise ConfigError(f"{key} = {value!r} is not a valid {getattr(tp, '__name__', tp)}")


def _build(cls, values: dict, prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (known keys: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in values.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, f"{prefix}{name}")
    return cls(**kwargs)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`section.key=value` strings into the raw mapping; values are parsed as YAML (so `2`, `true`, `[1, 2]`)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        dotted, text = item.split("=", 1)
        *parents, leaf = dotted.strip().split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is not a section")
        node[leaf] = yaml.safe_load(text)
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from the defaults), apply `--set` overrides, type-check and validate."""
    raw = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise ConfigError(f"config file {path} {what} (give a YAML file; the profiles live in configs/)")
        try:
            raw = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not valid YAML ({' '.join(str(e).split())})") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} holds no config (a YAML mapping of sections, as in configs/ci.yaml)")
    raw = apply_overrides(raw, overrides or [])
    return _build(Config, raw, "").validate()


# Options that change how fast a run's batches arrive and never what they hold (a test checks it bit for bit): a run
# trained with another value of these is the same run, up to date and resumable.
SPEED_ONLY = ("data.cache_images",)


def changed_sections(saved: dict, config: Config) -> list[str]:
    """The sections in which `config` differs from the config a checkpoint's JSON records (`saved`), `SPEED_ONLY`
    options aside. A key added since it was saved counts at its default, so a run saved before a new option existed
    still matches a config that leaves the option there; a key this version does not know counts as a change of
    its section."""
    ours = config.to_json()
    try:
        saved = _build(Config, saved, "").to_json()
    except ConfigError:
        pass  # compared as saved: the section holding the unknown key differs
    ours, saved = without_speed_only(ours), without_speed_only(saved)
    return sorted(k for k in ours.keys() | saved.keys() if saved.get(k) != ours.get(k))


def without_speed_only(sections: dict) -> dict:
    """A config's sections (as its YAML or a checkpoint's JSON holds them) less the `SPEED_ONLY` options, a copy; a
    section that held nothing else goes too, so a YAML that adds one reads as the YAML without it."""
    sections = {name: dict(values) if isinstance(values, dict) else values for name, values in sections.items()}
    for section, key in (option.split(".") for option in SPEED_ONLY):
        if isinstance(sections.get(section), dict) and key in sections[section]:
            del sections[section][key]
            if not sections[section]:
                del sections[section]
    return sections


def dump_config(config: Config) -> str:
    def plain(x):
        if isinstance(x, tuple):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return yaml.safe_dump(plain(config.to_dict()), sort_keys=False)
