"""`make gpu-check`'s plumbing, on the CPU: stages that pass, fail and time out all reach the one JSON summary;
the rehearsal's shards are readable; every training stage's command gives a valid config. The stages
themselves need a GPU and run only where one is (the closing notes of the GPU issue say where)."""

import json
import shlex
import sys

import pytest

from miniclip.bench import gpu_check
from miniclip.bench.gpu_check import Stage, run_gpu_check
from miniclip.cli import build_parser
from miniclip.config import load_config
from miniclip.data.shards import ShardDataset
from miniclip.env import ROOT
from miniclip.errors import UsageError


def test_every_stage_is_recorded_whether_it_passes_fails_or_times_out(tmp_path):
    py = sys.executable
    stages = [
        Stage("prints", [py, "-c", "import json; print(json.dumps({'runs': [{'batch_size': 256, 'precision': "
                                   "'bf16', 'speedup': {'median': 1.5}, 'contenders': {'miniclip': "
                                   "{'samples_per_s': 300.0}, 'open_clip': {'samples_per_s': 200.0}}}]}))"], 30,
              gpu_check.step_bench_summary),
        Stage("fails", [py, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"], 30),
        Stage("hangs", [py, "-c", "import time; time.sleep(30)"], 1),
        Stage("in_process", lambda: {"samples": 4}, 10),
    ]
    summary = run_gpu_check(stages, require_cuda=False, out_dir=tmp_path)
    saved = json.loads((tmp_path / "gpu-check.json").read_text())
    by_name = {r["name"]: r for r in saved["stages"]}
    assert by_name["prints"]["ok"] and by_name["prints"]["speedup_over_open_clip"] == 1.5
    assert by_name["prints"]["samples_per_s"] == {"miniclip": 300.0, "open_clip": 200.0}
    assert not by_name["fails"]["ok"] and by_name["fails"]["rc"] == 3 and "boom" in by_name["fails"]["output_tail"]
    assert not by_name["hangs"]["ok"] and "timed out" in by_name["hangs"]["error"]
    assert by_name["in_process"]["ok"] and by_name["in_process"]["samples"] == 4
    assert saved["ok"] is False and summary["ok"] is False
    # the goals read the stages they come from; absent stages give no measurement, and no goal is met by default
    assert saved["goals"]["speedup_vs_open_clip"]["measured"] is None
    assert saved["goals"]["gpu_1m_peak_memory_mb"]["met"] is False


def test_goals_compare_the_measurements_with_the_issue_targets():
    goals = gpu_check.goals({"bench_vit_b32_bf16_256": {"speedup_over_open_clip": 1.3},
                             "rehearsal_gpu_1m_50": {"peak_memory_mb": 13000.0}})
    assert goals["speedup_vs_open_clip"]["met"] and not goals["gpu_1m_peak_memory_mb"]["met"]


def test_without_cuda_it_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="needs a CUDA GPU"):
        run_gpu_check([])


def test_the_rehearsal_shards_are_readable_pictures_with_captions(tmp_path):
    written = gpu_check.write_rehearsal_shards(tmp_path, n=12, image_size=32)
    assert written["samples"] == 12
    samples = list(ShardDataset(str(tmp_path / "*.tar")))
    assert len(samples) == 12 and all(isinstance(caption, str) and caption for _, caption in samples)


def test_every_training_stage_gives_a_valid_short_config():
    trains = [s for s in gpu_check.stages("python") if isinstance(s.command, list) and "train" in s.command]
    assert {s.name for s in trains} == {"train_gpu_shapes_200", "rehearsal_gpu_1m_50"}
    for stage in trains:
        args = build_parser().parse_args(stage.command[3:])
        config = load_config(ROOT / args.config, args.set or [])
        assert config.optim.steps in (50, 200) and config.optim.warmup_steps <= config.optim.steps, shlex.join(
            stage.command)


def test_a_training_stage_reads_its_last_step_and_peak_memory_from_metrics(tmp_path):
    lines = [{"step": 10, "loss": 4.0, "samples_per_s": 90.0, "peak_memory_mb": 900.0},
             {"step": 10, "kind": "val", "val_loss": 3.9},
             {"step": 20, "loss": 3.5, "samples_per_s": 100.0, "peak_memory_mb": 800.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert gpu_check.run_metrics(tmp_path) == {"steps_logged": 2, "loss": 3.5, "samples_per_s": 100.0,
                                               "peak_memory_mb": 900.0}


def test_speed_items_turn_each_item_off_in_turn_and_compare_with_all_on(tmp_path):
    from miniclip.bench.speed_items import ITEMS, run_speed_items, speed_items_table

    result = run_speed_items("configs/ci.yaml", steps=4, log_every=2, device="cpu", num_workers=0, out_dir=tmp_path)
    rows = result["rows"]
    assert [r["override"] for r in rows] == ["", *(override for _, override, _ in ITEMS)]
    assert all(r["samples_per_s"] > 0 and r["windows"] == 1 for r in rows)
    assert rows[0]["ratio_to_all_on"] == 1.0
    assert rows[1]["ratio_to_all_on"] == pytest.approx(rows[1]["samples_per_s"] / rows[0]["samples_per_s"])
    # On the CPU only the loader workers can change anything, and the table says which rows are moot.
    assert [r["matters_here"] for r in rows] == [True, False, False, False, False, True, False]
    assert "does nothing on this device" in "\n".join(speed_items_table(result))
    assert json.loads((tmp_path / "speed-items-cpu.json").read_text())["rows"] == rows
    summary = gpu_check.speed_items_summary(json.dumps(result))
    assert summary["ratio_to_all_on"]["all on"] == 1.0 and len(summary["ratio_to_all_on"]) == len(ITEMS) + 1


def test_the_cuda_kernel_switches_follow_the_config():
    import torch

    from miniclip.train.trainer import _fast_cuda_kernels

    before = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    try:
        _fast_cuda_kernels("fp32", cudnn_benchmark=True, tf32=True)
        assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"
        _fast_cuda_kernels("fp32", cudnn_benchmark=False, tf32=False)
        assert not torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "highest"
        _fast_cuda_kernels("bf16", cudnn_benchmark=True, tf32=True)  # autocast's matmuls are bf16 already
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.backends.cudnn.benchmark = before[0]
        torch.set_float32_matmul_precision(before[1])
