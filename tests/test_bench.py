"""The benchmark suite's arithmetic and output, never its timings: the analytic FLOP count against torch's
FlopCounterMode on real steps, MFU, and the JSON and summary table of a tiny one-round run."""

import json

import pytest
import torch
import torch.nn.functional as F

from miniclip.bench import step as step_bench
from miniclip.bench.flops import flop_counter, mfu, step_flops
from miniclip.bench.memory import current_rss_mb, peak_rss_mb, reset_peak_rss
from miniclip.bench.step import StepBenchConfig, open_clip_from_config
from miniclip.bench.suite import SuiteConfig, format_summary, run_all
from miniclip.cli import build_parser
from miniclip.loss import ClipLoss
from miniclip.model import CLIP, CLIPConfig, capture_attention
from miniclip.tokenizer import tokenize

TINY_VIT = CLIPConfig(embed_dim=32, image_size=32, vision_layers=2, vision_width=64, patch_size=8,
                      text_width=64, text_layers=2)
# Two blocks in the second stage: both the strided first block (pool + skip conv) and a plain one.
TINY_RESNET = CLIPConfig(embed_dim=32, image_size=64, vision_layers=(1, 2, 1, 1), vision_width=8,
                         text_width=64, text_layers=1)
CAPTIONS = ["a dog runs on the beach .", "two children play in the snow near a red wooden fence .", "a cat"]


def _counted_step(model, images, text) -> tuple[int, int]:
    """(forward FLOPs, forward+backward FLOPs) of one training step, as FlopCounterMode counts them."""
    with flop_counter() as counter:
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = F.normalize(model.encode_text(text), dim=-1)
        loss = ClipLoss()(img, txt, model.logit_scale.exp())
        forward = counter.get_total_flops()
        loss.backward()
    return forward, counter.get_total_flops()


@pytest.mark.parametrize("config", [TINY_VIT, TINY_RESNET], ids=["vit", "resnet"])
@pytest.mark.parametrize("trim", [True, False], ids=["trimmed", "full-context"])
def test_step_flops_equal_flop_counter_mode(config, trim):
    torch.manual_seed(0)
    model = CLIP(config).train()
    model.trim_text = trim
    images, text = torch.randn(3, 3, config.image_size, config.image_size), tokenize(CAPTIONS)
    forward, total = _counted_step(model, images, text)
    positions = model.text_positions(text)
    assert positions == (16 if trim else 77)  # the longest caption has 13 tokens with SOT/EOT
    expected = step_flops(config, 3, positions)
    assert expected["forward"] == forward
    # torch counts the fused attention kernel's backward with its recomputation of QKᵀ; MFU leaves it out.
    assert expected["total"] + expected["forward_attention"] // 2 == total


def test_explicit_attention_path_counts_the_same_flops():
    """The explicit softmax path (plain matmuls, which FlopCounterMode always counts) does the same work
    as the fused kernel (counted with torch's SDPA formulas), so both agree with the analytic count."""
    torch.manual_seed(0)
    model = CLIP(TINY_VIT).train()
    images, text = torch.randn(2, 3, 32, 32), tokenize(CAPTIONS[:2])
    with capture_attention(model):
        _, explicit = _counted_step(model, images, text)
    assert explicit == step_flops(TINY_VIT, 2, model.text_positions(text))["total"]


def test_open_clips_step_is_counted_at_full_context():
    reference = open_clip_from_config(TINY_VIT).train()
    images, text = torch.randn(2, 3, 32, 32), tokenize(CAPTIONS[:2])
    with flop_counter() as counter:
        img = F.normalize(reference.encode_image(images), dim=-1)
        txt = F.normalize(reference.encode_text(text), dim=-1)
        ClipLoss()(img, txt, reference.logit_scale.exp()).backward()
    flops = step_flops(TINY_VIT, 2)
    # open_clip's attention goes through the same fused kernel (nn.MultiheadAttention calls SDPA), over all 77.
    assert counter.get_total_flops() == flops["total"] + flops["forward_attention"] // 2


def test_step_flops_parts_by_hand():
    """A one-layer ViT small enough to count on paper."""
    c = CLIPConfig(embed_dim=4, image_size=4, vision_layers=1, vision_width=8, patch_size=2, context_length=5,
                   text_width=8, text_layers=1)
    grid_tokens, text_tokens = 4, 5
    patch = 2 * 3 * 2 * 2 * 8 * grid_tokens
    vit_block = 2 * 12 * (grid_tokens + 1) * 8 * 8 + 2 * 2 * (grid_tokens + 1) ** 2 * 8
    text_block = 2 * 12 * text_tokens * 8 * 8 + 2 * 2 * text_tokens**2 * 8
    flops = step_flops(c, batch_size=1)
    assert flops["forward_image"] == patch + vit_block + 2 * 8 * 4
    assert flops["forward_text"] == text_block + 2 * 8 * 4
    assert flops["forward_logits"] == 2 * 1 * 1 * 4
    assert flops["total"] == 3 * flops["forward"] - patch


def test_mfu_arithmetic():
    assert mfu(flops=50e9, seconds=1.0, peak_gflops=100.0) == pytest.approx(0.5)
    assert mfu(flops=3e12, seconds=10.0, peak_gflops=300.0) == pytest.approx(1.0)
    # MFU is achieved FLOP/s over the peak: halving the time doubles it.
    assert mfu(1e9, 0.5, 4.0) == pytest.approx(2 * mfu(1e9, 1.0, 4.0))


def test_peak_memory_reading_is_positive_and_reset_does_not_break_it():
    reset_peak_rss()
    assert peak_rss_mb() > 0
    assert current_rss_mb() is None or current_rss_mb() > 0


def test_tiny_suite_writes_json_and_one_summary_table(tmp_path, capsys):
    suite = SuiteConfig(
        archs=(TINY_VIT,), compile_archs=(), precisions=("fp32",), batch_sizes=(2,), rounds=1, warmup=0,
        data_seconds=0.01, data_configs=(), shard_samples=8, cache_images=2, eval_checkpoint=TINY_VIT,
        zeroshot_images=4, retrieval_images=2, peak_size=256, peak_seconds=0.01)
    results = run_all(suite, out_dir=tmp_path)
    saved = json.loads((tmp_path / "all-cpu.json").read_text())
    assert saved["summary"] == results["summary"]
    assert saved["finished"].endswith("+00:00") and "commit" in saved  # when, and from what code
    assert set(saved["sections"]) == {"model custom", "data", "eval"}
    for name, section in saved["sections"].items():
        assert "error" not in section, (name, section.get("error"))
        assert section["peak_rss_mb"] > 0 and section["wall_s"] > 0

    (run,) = saved["sections"]["model custom"]["runs"]
    assert run["max_feature_diff"] < 1e-4  # ours and open_clip's were built from one state dict
    assert set(run["contenders"]) == {"miniclip", "open_clip", "no text trim", "explicit attention"}
    for name, c in run["contenders"].items():
        assert len(c["times_s"]) == 1 and c["median_s"] > 0 and c["peak_rss_mb"] > 0, name
        assert c["mfu"] == pytest.approx(mfu(c["flops"], c["median_s"], saved["matmul_gflops"]["fp32"]))
    assert run["contenders"]["open_clip"]["flops"] == step_flops(TINY_VIT, 2)["total"]
    assert run["contenders"]["miniclip"]["text_positions"] < 77
    assert run["contenders"]["no text trim"]["gain"]["median"] > 0
    assert run["speedup"]["min"] <= run["speedup"]["median"] <= run["speedup"]["max"]

    rows = saved["summary"]
    assert {r["section"] for r in rows} >= {"ceiling", "step", "MFU", "ablation", "data", "eval", "memory", "total"}
    assert all(set(r) == {"section", "item", "value", "note"} for r in rows)
    table = format_summary(rows)
    out = capsys.readouterr().out
    assert table in out and out.count("speedup vs open_clip") == 1
    assert len(table.splitlines()) == len(rows) + 2  # header, rule, one line per row


def test_resnet_step_is_timed_as_the_trainer_runs_it(monkeypatch):
    """For a ModifiedResNet ours is timed in channels_last, as `Trainer` trains it, open_clip's in its default
    layout as its users run it, and the variant `no channels_last` switches only that off."""
    seen = {}

    def record(model, loss_fn, images, text, precision, device, compile, context):
        seen.setdefault("calls", []).append((model, images))
        return lambda: None

    monkeypatch.setattr(step_bench, "_make_step", record)
    reference = open_clip_from_config(TINY_RESNET)
    images = torch.randn(2, 3, 64, 64)
    contenders, max_diff = step_bench._contenders(StepBenchConfig(arch=TINY_RESNET, batch_size=2), reference, images,
                                                  tokenize(CAPTIONS[:2]), torch.device("cpu"))
    names = [c.name for c in contenders]
    assert names == ["miniclip", "open_clip", "no text trim", "explicit attention", "no channels_last"]
    assert max_diff < 1e-4
    layouts = {name: (model.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last)
                      if name != "open_clip" else None,
                      images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous())
               for name, (model, images) in zip(names, seen["calls"])}
    assert layouts["miniclip"] == (True, True)
    assert layouts["open_clip"] == (None, False) and seen["calls"][1][0] is reference
    assert layouts["no text trim"] == layouts["explicit attention"] == (True, True)
    assert layouts["no channels_last"] == (False, False)
    assert step_bench.VARIANTS["no channels_last"]["enabled"]  # its gain reads t(variant) / t(miniclip)


def test_bench_command_line_parses_every_part():
    parser = build_parser()
    for what in ("all", "model", "data", "eval", "memory", "build"):
        assert parser.parse_args(["bench", what]).what == what
    args = parser.parse_args(["bench", "all", "--device", "cuda", "--book"])
    assert args.device == "cuda" and args.book


def test_bench_cost_is_step_flops_times_steps_at_the_assumed_rate(capsys):
    from miniclip.cli import main
    from miniclip.config import load_config

    assert main(["bench", "cost", "--config", "configs/gpu-shapes.yaml", "configs/cpu-shapes.yaml",
                 "--tflops", "20", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    costs = json.loads(lines[-1])
    for cost, path in zip(costs, ["configs/gpu-shapes.yaml", "configs/cpu-shapes.yaml"]):
        config = load_config(path)
        total = step_flops(config.model, config.optim.batch_size)["total"] * config.optim.steps
        assert cost["run_pflop"] == pytest.approx(total / 1e15)
        assert cost["minutes"] == pytest.approx(total / 20e12 / 60)
    assert lines[2].startswith("together:") and "not a timing" in lines[2]


def test_bench_cost_counts_low_res_steps_at_their_size():
    import dataclasses

    from miniclip.bench.flops import training_cost
    from miniclip.config import load_config

    config = load_config("configs/cpu-flickr8k.yaml", ["data.low_res_size=64", "data.low_res_steps=100"])
    step = step_flops(config.model, config.optim.batch_size)["total"]
    small = step_flops(dataclasses.replace(config.model, image_size=64), config.optim.batch_size)["total"]
    assert small < step
    cost = training_cost(config, 1.0)
    assert cost["run_pflop"] == pytest.approx((small * 100 + step * (config.optim.steps - 100)) / 1e15)
    assert cost["step_tflop"] == pytest.approx(step / 1e12)


def test_bench_cost_without_configs_is_a_one_line_error(capsys):
    from miniclip.cli import main

    assert main(["bench", "cost"]) != 0
    assert "error: bench cost needs --config" in capsys.readouterr().err


def test_bench_cost_of_experiments_counts_every_training_run_of_the_profile():
    from miniclip.bench.flops import experiment_runs
    from miniclip.experiments.store import experiment_settings

    settings = experiment_settings("gpu")
    runs = {label: (config, count) for label, config, count in experiment_runs(settings)}
    assert runs["planted"][1] == len(settings["planted"]["rates"]) and runs["objectives"][1] == 3
    assert runs["relations"][1] == 2 and not any(label.startswith("throughput") for label in runs)
    assert runs["encoders: flickr8k vit"][0].model.is_vit and not runs["encoders: flickr8k resnet"][0].model.is_vit
    batch_128 = runs["lr_batch: batch 128"][0]
    assert batch_128.optim.steps * 128 == settings["lr_batch"]["samples"] and batch_128.profile == "gpu"
