"""Config files fail at start, naming the key, when they cannot run."""

from pathlib import Path

import pytest

from miniclip.config import Config, ConfigError, dump_config, load_config


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_round_trip_through_yaml(tmp_path):
    config = load_config(write(tmp_path, dump_config(Config())))
    assert config == Config()


def test_types_are_coerced_and_overrides_apply(tmp_path):
    path = write(tmp_path, "optim:\n  lr: 5e-4\n  betas: [0.9, 0.98]\nmodel:\n  vision_layers: [3, 4, 6, 3]\n")
    config = load_config(path, ["optim.batch_size=64", "train.precision=bf16", "data.shapes={lang_rates: {fr: 0.1}}"])
    assert config.optim.lr == 5e-4 and config.optim.betas == (0.9, 0.98)
    assert config.model.vision_layers == (3, 4, 6, 3) and not config.model.is_vit
    assert config.optim.batch_size == 64 and config.train.precision == "bf16"
    assert config.data.shapes == {"lang_rates": {"fr": 0.1}}


@pytest.mark.parametrize("text,overrides,message", [
    ("optim:\n  lrr: 0.1\n", [], "unknown key optim.lrr"),
    ("modle:\n  embed_dim: 3\n", [], "unknown key modle"),
    ("{}\n", ["optim.lr=-1"], "optim.lr = -1.0 must be positive"),
    ("{}\n", ["optim.batch_size=ten"], "optim.batch_size = 'ten' is not a valid int"),
    ("{}\n", ["optim.batch_size=96", "optim.grad_cache_chunks=5"], "optim.grad_cache_chunks"),
    ("{}\n", ["train.precision=fp8"], "train.precision"),
    ("{}\n", ["model.image_size=70"], "model.image_size = 70 must be a multiple of model.patch_size"),
    ("{}\n", ["optim.warmup_steps=5000"], "optim.warmup_steps"),
    ("{}\n", ["data.dataset=imagenet"], "data.dataset"),
    ("{}\n", ["data.zeroshot=imagenet"], "data.zeroshot = 'imagenet' must be one of auto, none, shapes, cifar10, "
                                          "intel-scenes"),
    ("{}\n", ["optim.betas=[0.9]"], "optim.betas"),
    ("{}\n", ["data.crop_scale=[0.6,0.4]"], "data.crop_scale .* must be .low, high."),
    ("{}\n", ["data.color_jitter=1.5"], "data.color_jitter = 1.5 must be in .0, 1."),
    ("{}\n", ["model.text_pool=cls"], "model.text_pool = 'cls' must be eot, first or mean"),
    ("{}\n", ["model.logit_scale_init=0.5"], "model.logit_scale_init = 0.5 must lie in .1, optim.max_logit_scale."),
    ("optim: 3\n", [], "optim must be a mapping"),
    ("optim: [1,\n", [], "not valid YAML"),
    ("{}\n", ["optim"], "expected section.key=value"),
])
def test_bad_configs_name_the_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(write(tmp_path, text), overrides)


@pytest.mark.parametrize("check", ["auto", "none", "shapes", "cifar10", "intel-scenes"])
def test_every_periodic_zero_shot_check_validates(tmp_path, check):
    assert load_config(write(tmp_path, "{}\n"), [f"data.zeroshot={check}"]).data.zeroshot == check


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a list\n", "just words\n"])
def test_a_file_without_a_mapping_is_no_config(tmp_path, text):
    """An empty file would otherwise train the defaults: a mistake, said so, not a run."""
    with pytest.raises(ConfigError, match="holds no config"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_shipped_config_is_valid(path):
    config = load_config(path)
    assert config.profile in path.stem or path.stem == config.profile


def test_the_runbooks_train_commands_load_their_configs():
    # Appendix F's commands are copied by readers before they spend GPU hours: each must at least parse and
    # give a valid config (the 50-step rehearsal once failed on its 2,000 warm-up steps).
    import re
    import shlex

    from miniclip.cli import build_parser

    root = Path(__file__).resolve().parent.parent
    commands = re.findall(r"^python -m miniclip (train .*)$", (root / "book" / "appendix_f_runbook.md").read_text(),
                          flags=re.M)
    assert commands
    for command in commands:
        args = build_parser().parse_args(shlex.split(command))
        config = load_config(root / args.config, args.set or [])
        assert config.optim.warmup_steps <= config.optim.steps, command
