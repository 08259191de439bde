"""Every command, fed bad input, answers with one `error:` line and a non-zero exit, never a traceback.

The commands come from the parser itself, so a new command without cases here fails
`test_every_command_has_bad_input_cases`. Each case is an argv (with `{placeholders}` for files the fixture
makes: a missing file, an empty file, a file in the wrong format, a directory where a file is expected, a good
tiny checkpoint) and runs in-process through `miniclip.cli.main`, the entry point `python -m miniclip` uses.
Nothing here reaches the network: the one download case points at a closed port on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import sys

import pytest
import torch
from PIL import Image

from miniclip.checkpoint import save_checkpoint
from miniclip.cli import build_parser, main
from miniclip.model import CLIP, CLIPConfig

TINY = CLIPConfig(embed_dim=16, image_size=16, vision_layers=1, vision_width=32, patch_size=8, text_width=32,
                  text_layers=1, head_width=16)

# (command, argv) pairs; a command is its words before the options ("eval zeroshot", "bench").
BAD_CHECKPOINTS = ("{missing}.safetensors", "{empty}.safetensors", "{text}.safetensors", "{directory}")
CASES = [
    *[("train", ["train", "--config", path]) for path in
      ("{missing}.yaml", "{empty}.yaml", "{garbage}.yaml", "{directory}")],
    ("train", ["train", "--config", "configs/ci.yaml", "--set", "optim.steps=-1"]),
    ("train", ["train", "--config", "configs/ci.yaml", "--set", "nope.key=1"]),
    ("train", ["train", "--config", "configs/ci.yaml", "--out", "{text}.json"]),
    ("train", ["train", "--config", "configs/ci.yaml", "--out", "{fresh}", "--set", "train.device=cpu",
               "--set", "train.precision=fp16"]),
    *([("train", ["train", "--config", "configs/ci.yaml", "--out", "{fresh}", "--set", "train.device=cuda"])]
      if not torch.cuda.is_available() else []),
    *[("eval zeroshot", ["eval", "zeroshot", "--checkpoint", c, "--data", "shapes:8"]) for c in BAD_CHECKPOINTS],
    ("eval zeroshot", ["eval", "zeroshot", "--checkpoint", "{good}", "--data", "nope"]),
    ("eval zeroshot", ["eval", "zeroshot", "--checkpoint", "{good}", "--data", "imagefolder:{missing}"]),
    ("eval zeroshot", ["eval", "zeroshot", "--checkpoint", "{good}", "--data", "intel-scenes"]),  # not on disk
    ("eval zeroshot", ["eval", "zeroshot", "--checkpoint", "{good}", "--data", "imagefolder:{folder}", "--templates",
                       "scenes"]),  # bare class names in templates that want an article
    ("eval zeroshot", ["eval", "zeroshot", "--checkpoint", "{good}", "--data", "shapes:8", "--templates", "nope"]),
    ("eval zeroshot", ["eval", "zeroshot", "--checkpoint", "{good}", "--data", "shapes:8", "--lang", "xx"]),
    ("eval zeroshot", ["eval", "zeroshot", "--checkpoint", "{good}", "--data", "shapes:-3"]),
    ("eval zeroshot", ["eval", "zeroshot", "--checkpoint", "{good}", "--data", "shapes:8", "--device", "gpu"]),
    *[("eval retrieval", ["eval", "retrieval", "--checkpoint", c, "--data", "flickr8k"]) for c in BAD_CHECKPOINTS],
    ("eval retrieval", ["eval", "retrieval", "--checkpoint", "{good}", "--data", "cifar10"]),
    ("eval retrieval", ["eval", "retrieval", "--checkpoint", "{good}", "--data", "flickr8k:{missing}"]),
    *[(f"eval {what}", ["eval", what, "--checkpoint", c, "--data", "imagefolder:{folder}"])
      for what in ("probe", "fewshot", "robustness") for c in BAD_CHECKPOINTS],
    *[(f"eval {what}", ["eval", what, "--checkpoint", "{good}", "--data", data])
      for what in ("probe", "fewshot", "robustness") for data in ("nope", "imagefolder:{missing}")],
    ("eval probe", ["eval", "probe", "--checkpoint", "{good}", "--data", "imagefolder:{folder}", "--batch-size", "0"]),
    ("eval probe", ["eval", "probe", "--checkpoint", "{good}", "--data", "imagefolder:{folder}", "--templates",
                    "nope"]),
    ("eval probe", ["eval", "probe", "--checkpoint", "{good}", "--data", "intel-scenes"]),
    ("eval fewshot", ["eval", "fewshot", "--checkpoint", "{good}", "--data", "imagefolder:{folder}", "--shots", "0"]),
    ("eval robustness", ["eval", "robustness", "--checkpoint", "{good}", "--data", "shapes:8", "--n-shifted", "-1"]),
    *[("eval attributes", ["eval", "attributes", "--checkpoint", c]) for c in BAD_CHECKPOINTS],
    ("eval attributes", ["eval", "attributes", "--checkpoint", "{good}"]),  # not a Shapes model
    ("eval attributes", ["eval", "attributes", "--checkpoint", "{good}", "--n", "0"]),
    ("eval attributes", ["eval", "attributes", "--checkpoint", "{good}", "--lang", "xx"]),
    ("bench", ["bench", "nope"]),
    ("bench", ["bench", "model", "--arch", "nope"]),
    ("bench", ["bench", "model", "--arch", "{missing}.yaml"]),
    ("bench", ["bench", "model", "--arch", "{garbage}.yaml"]),
    ("bench", ["bench", "model", "--batch-size", "0"]),
    ("bench", ["bench", "all", "--rounds", "0"]),
    ("bench", ["bench", "recipe", "--budget-min", "0"]),
    ("bench", ["bench", "recipe", "--budget-min", "soon"]),
    ("bench", ["bench", "recipe", "--config", "{missing}.yaml"]),
    ("bench", ["bench", "memory", "--device", "tpu"]),
    *([("bench", ["bench", "memory", "--device", "cuda"])] if not torch.cuda.is_available() else []),
    *([("eval zeroshot", ["eval", "zeroshot", "--checkpoint", "{good}", "--data", "shapes:8", "--device", "cuda"])]
      if not torch.cuda.is_available() else []),
    ("data shards", ["data", "shards", "--dataset", "nope", "--out", "{fresh}"]),
    ("data shards", ["data", "shards", "--dataset", "imagefolder:{missing}", "--out", "{fresh}"]),
    ("data shards", ["data", "shards", "--dataset", "shapes:4", "--out", "{text}.json"]),
    ("data shards", ["data", "shards", "--dataset", "shapes:4", "--out", "{fresh}", "--shard-size", "0"]),
    *[("data web-subset", ["data", "web-subset", "--urls", urls, "--num-samples", "4", "--out", "{fresh}"])
      for urls in ("{missing}.tsv", "{empty}.tsv", "{garbage}.parquet", "{directory}", "{not_http}.tsv")],
    ("data web-subset", ["data", "web-subset", "--urls", "{not_http}.tsv", "--num-samples", "0", "--out", "{fresh}"]),
    ("data download", ["data", "download", "nope"]),
    ("data download", ["data", "download", "flickr8k", "--dest", "{text}.json"]),
    ("data download", ["data", "download", "flickr8k", "--dest", "{fresh}", "--url", "http://127.0.0.1:9/closed"]),
    ("data download", ["data", "download", "intel-scenes", "--dest", "{fresh}"]),  # behind a login: explained
    ("experiments", ["experiments", "nope"]),
    ("experiments", ["experiments", "planted", "--profile", "nope"]),
]


def leaf_commands(parser: argparse.ArgumentParser, words=()) -> list[str]:
    """Every command a user can run, as its words ("eval zeroshot"); `bench` takes its mode as an argument."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        return [" ".join(words)]
    return [leaf for action in subparsers for name, sub in action.choices.items()
            for leaf in leaf_commands(sub, (*words, name))]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    (root / "empty.safetensors").touch()
    (root / "empty.json").touch()
    for suffix in ("yaml", "tsv"):
        (root / f"empty.{suffix}").touch()
    (root / "text.safetensors").write_text("not a checkpoint")
    (root / "text.json").write_text("{not json")
    (root / "garbage.yaml").write_text("model: [unclosed\n  : {")
    (root / "garbage.parquet").write_bytes(b"\x00\x01 not parquet " * 8)
    (root / "not_http.tsv").write_text("a dog\tfile:///etc/passwd\na cat\tftp://example.invalid/cat.jpg\n")
    (root / "directory").mkdir()
    folder = root / "folder"
    for label, colour in (("a", "red"), ("b", "blue")):
        (folder / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20, 20), colour).save(folder / label / f"{i}.png")
    torch.manual_seed(0)
    save_checkpoint(root, "good", CLIP(TINY), step=0, run_config={})
    return {"missing": str(root / "missing"), "empty": str(root / "empty"), "text": str(root / "text"),
            "garbage": str(root / "garbage"), "directory": str(root / "directory"), "not_http": str(root / "not_http"),
            "good": str(root / "good.safetensors"), "folder": str(folder)}


def test_every_command_has_bad_input_cases():
    covered = {command for command, _ in CASES}
    missing = set(leaf_commands(build_parser())) - covered
    assert not missing, f"commands without bad-input cases in this file: {sorted(missing)}"


@pytest.mark.parametrize("command,argv", CASES, ids=[" ".join(argv) for _, argv in CASES])
def test_bad_input_is_one_error_line(command, argv, files, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path / "no-data-here"))  # no real data: missing data is an error
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parent.parent)  # configs/ci.yaml resolves
    argv = [arg.format(**{**files, "fresh": str(tmp_path / "fresh-out")}) for arg in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage and one `error:` line, status 2
        code = e.code
    err = capsys.readouterr().err
    assert code not in (0, None), f"{argv} exited 0"
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1, f"{argv}: want one error: line, got:\n{err}"
    assert "Traceback" not in err, err
    fresh = tmp_path / "fresh-out"
    left = [p for p in fresh.rglob("*") if p.is_file()] if fresh.exists() else []
    assert not left, f"{argv} left files in its output folder: {left}"  # no half-written shard, no partial file
    print(json.dumps({"argv": argv, "code": code, "error": error_lines[0]}))


def test_a_missing_optional_dependency_is_one_error_line(files, capsys, monkeypatch, tmp_path):
    """img2dataset is imported only by `data web-subset`; without it (as on a machine without the data extra)
    the command says what to install, in one line, rather than a traceback."""
    monkeypatch.setitem(sys.modules, "img2dataset", None)  # `import img2dataset` now raises ModuleNotFoundError
    code = main(["data", "web-subset", "--urls", files["not_http"] + ".tsv", "--num-samples", "4",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == ["error: this command needs img2dataset, an optional dependency that is not "
                                        "installed (pip install -e '.[data]')"]


def test_a_missing_reference_is_one_error_line(capsys, monkeypatch):
    """`bench model` compares with open_clip (the test extra); without it the command says so in one line, before
    it spends minutes measuring matmul peaks."""
    monkeypatch.setitem(sys.modules, "open_clip", None)  # `import open_clip` now raises ModuleNotFoundError
    code = main(["bench", "model", "--rounds", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == ["error: this needs open_clip, the reference implementation, which is not "
                                        "installed (pip install -e '.[test]')"]


def test_tensorboard_without_its_package_is_one_error_line(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parent.parent)  # configs/ci.yaml resolves
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    code = main(["train", "--config", "configs/ci.yaml", "--out", str(tmp_path / "run"), "--set",
                 "train.tensorboard=true"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1] == ("error: train.tensorboard=true needs the tensorboard package, which is not "
                                            "installed (pip install tensorboard, or set train.tensorboard=false)")
