"""The book's profiles: which configs, runs, experiment results and figure folder each one uses, and the Makefile
that builds them. The gpu and gpu-1m books cannot be built here (no GPU); what they read and where they write can."""

import subprocess
from pathlib import Path

import pytest
import torch

from miniclip import book
from miniclip.book import pages
from miniclip.config import load_config
from miniclip.env import PROFILES
from miniclip.experiments import store
from miniclip.train.trainer import resolve_precision

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def as_profile(monkeypatch):
    def use(name: str):
        monkeypatch.setenv("MINICLIP_PROFILE", name)
    return use


@pytest.mark.parametrize("profile", ["cpu", "gpu", "gpu-1m"])
def test_each_book_profile_has_its_models_and_experiments(as_profile, profile):
    as_profile(profile)
    for name in ("shapes", "flickr8k"):
        config = load_config(pages.config_path(name))
        assert config.profile in (profile, "gpu")  # gpu-1m's Shapes model is the gpu book's
    settings = store.experiment_settings(profile)
    assert settings  # configs/experiments/<profile>.yaml, or gpu's for gpu-1m
    assert profile in PROFILES


def test_gpu_1m_reads_the_web_model_and_shares_the_gpu_experiments(as_profile):
    as_profile("gpu-1m")
    assert pages.config_path("flickr8k") == ROOT / "configs" / "gpu-1m.yaml"
    assert pages.config_path("shapes") == ROOT / "configs" / "gpu-shapes.yaml"
    assert store.experiments_profile("gpu-1m") == "gpu"
    assert store.experiment_settings("gpu-1m") == store.experiment_settings("gpu")
    assert store.results_path("noisy", "gpu-1m") == store.results_path("noisy", "gpu")
    assert pages.make("train") == "make train PROFILE=gpu-1m"


def test_without_the_web_model_gpu_1m_says_so_and_uses_the_gpu_flickr8k_model(as_profile, monkeypatch, tmp_path):
    as_profile("gpu-1m")
    notes = []
    monkeypatch.setattr(pages, "note", notes.append)
    monkeypatch.setattr(pages, "ROOT", tmp_path)  # the runs under a temporary root, beside the real configs
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.setattr(pages, "run_dir", lambda config: tmp_path / config.profile / config.name)
    (tmp_path / "gpu" / "flickr8k").mkdir(parents=True)
    (tmp_path / "gpu" / "flickr8k" / "final.safetensors").write_bytes(b"")
    assert pages.trained_run("flickr8k") == tmp_path / "gpu" / "flickr8k"
    assert len(notes) == 1 and "1M-pair web model" in notes[0] and "Appendix F" in notes[0]
    (tmp_path / "gpu-1m" / "web1m-vitb32").mkdir(parents=True)
    (tmp_path / "gpu-1m" / "web1m-vitb32" / "final.safetensors").write_bytes(b"")
    assert pages.trained_run("flickr8k") == tmp_path / "gpu-1m" / "web1m-vitb32"
    assert len(notes) == 1


@pytest.mark.parametrize("profile", PROFILES)
def test_only_the_cpu_book_writes_the_committed_figures(as_profile, monkeypatch, tmp_path, profile):
    as_profile(profile)
    monkeypatch.setattr(pages, "FIGURES", {k: tmp_path / v.name for k, v in pages.FIGURES.items()})
    monkeypatch.setattr(pages, "DEFAULT_FIGURES", tmp_path / "figures")
    expected = tmp_path / ("figures" if profile == "cpu" else f"figures-{profile}")
    assert book.figures_dir() == expected and expected.is_dir()


def make_dry_run(*args: str) -> subprocess.CompletedProcess:
    # -n prints the commands without running them; the install step is made to look done.
    return subprocess.run(["make", "-n", "-o", ".venv/.installed", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})


def test_make_book_builds_each_profile_apart():
    cpu = make_dry_run("book").stdout
    assert "MINICLIP_PROFILE=cpu" in cpu and "--path-output" not in cpu and "configs/cpu-shapes.yaml" in cpu
    gpu = make_dry_run("book", "PROFILE=gpu").stdout
    assert "MINICLIP_PROFILE=gpu " in gpu and "--path-output _build/gpu" in gpu
    assert "configs/gpu-shapes.yaml" in gpu and "configs/gpu-flickr8k.yaml" in gpu
    assert "_build/gpu/_build/.jupyter_cache" in gpu and "touch _build/gpu/_build/.built" in gpu
    web = make_dry_run("book", "PROFILE=gpu-1m").stdout
    assert "--path-output _build/gpu-1m" in web and "runs/gpu runs/gpu-1m" in web


def test_make_book_refuses_an_unknown_profile_in_one_line():
    result = subprocess.run(["make", "-o", ".venv/.installed", "book", "PROFILE=gpu-2"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "error: PROFILE=gpu-2 is not a book profile" in result.stderr


def test_precision_auto_is_bf16_on_a_recent_gpu_fp16_on_an_older_one_and_fp32_on_the_cpu(monkeypatch):
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
