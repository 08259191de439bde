"""The recipe bench (`bench recipe`): its arithmetic by hand, and its plumbing end to end on a tiny model, both
trainers for a few steps, checking that they saw the same images and captions."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from miniclip.bench import recipe
from miniclip.bench.recipe import RecipeBenchConfig, snapshot_steps, speed_ratio, time_to_reach
from miniclip.bench.reference import open_clip_config
from miniclip.data import loaders
from miniclip.errors import MissingDependency, UsageError
from miniclip.model import CLIPConfig

# (At 32 px a ResNet has no smaller size to start from: the book's low-resolution start is turned off.)
TINY = {"model.image_size": 32, "model.vision_width": 8, "model.embed_dim": 32, "model.text_width": 64,
        "model.text_layers": 1, "optim.batch_size": 8, "data.val_size": 8, "data.num_workers": 0,
        "data.low_res_size": 0, "data.low_res_steps": 0}


def test_time_to_reach_interpolates_between_copies():
    curve = [{"train_s": 10.0, "q": 0.2}, {"train_s": 20.0, "q": 0.4}, {"train_s": 30.0, "q": 0.5}]
    assert time_to_reach(curve, 0.1, "q") == pytest.approx(5.0)    # from (0 s, 0) to the first copy
    assert time_to_reach(curve, 0.3, "q") == pytest.approx(15.0)
    assert time_to_reach(curve, 0.5, "q") == pytest.approx(30.0)
    assert time_to_reach(curve, 0.6, "q") is None
    slow = [{"train_s": 40.0, "q": 0.1}, {"train_s": 80.0, "q": 0.3}]
    fast = [{"train_s": 10.0, "q": 0.2}, {"train_s": 20.0, "q": 0.4}]
    r = speed_ratio(slow, fast, "q")
    assert r["target"] == 0.3 and r["slow_s"] == 80.0 and r["fast_s"] == pytest.approx(15.0)
    assert r["ratio"] == pytest.approx(80 / 15)
    assert speed_ratio(fast, slow, "q")["ratio"] is None  # the slow run never reaches 0.4


def test_snapshot_steps_end_at_the_last_step():
    assert snapshot_steps(600, 6) == [100, 200, 300, 400, 500, 600]
    assert snapshot_steps(4, 6) == [1, 2, 3, 4]  # fewer steps than copies: every step once


def test_open_clip_config_refuses_a_bert_style_text_tower():
    with pytest.raises(UsageError, match="text tower"):
        open_clip_config(CLIPConfig(text_causal=False, text_pool="mean"))
    c = open_clip_config(CLIPConfig(vision_layers=(1, 1, 1, 1), vision_width=32, text_width=128, text_layers=2))
    assert c["vision_cfg"]["layers"] == [1, 1, 1, 1] and c["text_cfg"]["heads"] == 2


@pytest.mark.slow
def test_recipe_bench_runs_both_trainers_on_the_same_pairs(tmp_path, monkeypatch):
    pytest.importorskip("open_clip_train.main", reason="open_clip_train (the bench extra) is not installed")
    from miniclip.data.paths import MissingDataError

    ours_seen, drawn = [], []
    original, original_drop = loaders.SeededPairs.__getitem__, loaders.drop_words

    def recording_drop(caption, p):
        drawn.append(caption)  # the caption as drawn, before the book recipe's word dropout
        return original_drop(caption, p)

    def recording(self, key):
        image, caption = original(self, key)
        ours_seen.append((self.base.image_ids[key[1]], drawn.pop()))
        return image, caption

    monkeypatch.setattr(loaders, "drop_words", recording_drop)
    monkeypatch.setattr(loaders.SeededPairs, "__getitem__", recording)
    bench = RecipeBenchConfig(overrides=TINY, snapshots=2, steps={"open_clip": 4, "miniclip": 4},
                              contenders=("open_clip", "miniclip"), open_clip_workers=0, retrieval_images=16,
                              scenes_images=12, record_seen=True, out=tmp_path / "recipe")
    for name in ("open_clip", "miniclip"):  # an earlier, longer run's copy, at a step this run does not copy at
        (tmp_path / "recipe" / name).mkdir(parents=True)
        (tmp_path / "recipe" / name / "step999.safetensors").write_bytes(b"stale")
    try:
        result = recipe.run_recipe_bench(bench)
    except MissingDataError as e:
        pytest.skip(f"Flickr8k is not under $MINICLIP_DATA: {e}")

    # The same 32 (image, caption) pairs, each trainer in its own order.
    folder = tmp_path / "recipe" / "open_clip"
    with open(folder / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    theirs = [(Path(rows[int(i)]["filepath"]).name, rows[int(i)]["title"])
              for i in (folder / "seen.txt").read_text().split()]
    assert len(ours_seen) == len(theirs) == 4 * 8
    assert Counter(ours_seen) == Counter(theirs)

    saved = json.loads(Path(result["path"]).read_text())
    assert set(saved["contenders"]) == {"open_clip", "miniclip"}
    for name, c in saved["contenders"].items():
        assert c["steps"] == 4 and [p["step"] for p in c["curve"]] == [2, 4]
        kept = sorted(p.name for p in (tmp_path / "recipe" / name).glob("step*.safetensors"))
        assert kept == ["step2.safetensors", "step4.safetensors"]
        assert 0 < c["curve"][0]["train_s"] < c["curve"][1]["train_s"]
        for point in c["curve"]:
            assert 0 <= point["text_to_image_R@10"] <= 1 and 0 <= point["image_to_text_R@10"] <= 1
            assert point["R@10_mean"] == pytest.approx((point["text_to_image_R@10"]
                                                        + point["image_to_text_R@10"]) / 2)
            assert ("scenes_ensemble_top1" in point) == saved["scenes"]
    assert set(saved["equal_time"]) == {"train_s", "open_clip", "miniclip"}
    ratio = saved["ratios"]["open_clip -> miniclip"]
    assert ratio["target"] == saved["contenders"]["open_clip"]["curve"][-1]["R@10_mean"]
    assert ratio["ratio"] is None or ratio["ratio"] > 0
    assert saved["finished"].endswith("+00:00") and "commit" in saved  # when, and from what code
    argv = json.loads((folder / "spec.json").read_text())["argv"]  # open_clip warms up for its share of the run
    config = recipe.with_overrides(bench.config, bench.overrides)
    assert argv[argv.index("--warmup") + 1] == str(recipe.warmup_steps(config, 4))
    assert all(c["warmup_steps"] == recipe.warmup_steps(config, 4) for c in saved["contenders"].values())


def test_every_contender_warms_up_for_the_same_share_of_its_run():
    # The book's config warms up for a tenth of its 2,500 steps; a contender that runs 852 steps in the budget
    # warms up for a tenth of those, not for the config's 250 (29% of its run).
    bench = RecipeBenchConfig(overrides={**TINY, "optim.steps": 2500, "optim.warmup_steps": 250})
    config = recipe.with_overrides(bench.config, bench.overrides)
    for steps, warmup in ((852, 85), (1452, 145), (2500, 250), (2845, 284), (3, 0)):
        assert recipe.warmup_steps(config, steps) == warmup
        for open_clip_recipe in (False, True):
            assert recipe.ours_config(bench, config, steps, open_clip_recipe).optim.warmup_steps == warmup


def test_clear_snapshots_removes_an_earlier_runs_copies_only(tmp_path):
    for name in ("step288.safetensors", "step1730.safetensors", "snapshots.json", "spec.json", "train.csv"):
        (tmp_path / name).write_text("x")
    recipe.clear_snapshots(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.json", "train.csv"]


def test_quality_at_reads_a_curve_at_any_time():
    curve = [{"train_s": 10.0, "q": 0.2}, {"train_s": 20.0, "q": 0.4}]
    assert recipe.quality_at(curve, 5.0, "q") == pytest.approx(0.1)   # from (0 s, 0) to the first copy
    assert recipe.quality_at(curve, 15.0, "q") == pytest.approx(0.3)
    assert recipe.quality_at(curve, 20.0, "q") == pytest.approx(0.4)
    assert recipe.quality_at(curve, 99.0, "q") == pytest.approx(0.4)  # held after the last copy


def test_a_missing_open_clip_train_is_one_error_line(monkeypatch):
    find_spec = recipe.importlib.util.find_spec
    monkeypatch.setattr(recipe.importlib.util, "find_spec",
                        lambda name, *a: None if name == "open_clip_train" else find_spec(name, *a))
    with pytest.raises(MissingDependency, match=r"needs open_clip_train .*pip install -e '\.\[bench\]'"):
        recipe.run_recipe_bench(RecipeBenchConfig(steps={"miniclip": 1}))


def test_a_low_res_start_keeps_its_share_of_the_steps_and_is_calibrated_at_both_sizes(tmp_path, monkeypatch):
    # The book recipe's low-resolution start scales with the budget's steps; open_clip's recipe has none; and a
    # calibration times each size, weighted by its share of the run.
    bench = RecipeBenchConfig(overrides={**TINY, "model.image_size": 64, "optim.steps": 30, "optim.warmup_steps": 3,
                                         "data.low_res_size": 32, "data.low_res_steps": 20},
                              contenders=("miniclip", "miniclip, open_clip recipe"), calibration_steps=6)
    config = recipe.with_overrides(bench.config, bench.overrides)
    assert recipe.low_res_fraction(config) == pytest.approx(2 / 3)
    ours = recipe.ours_config(bench, config, 300, open_clip_recipe=False)
    assert (ours.optim.steps, ours.data.low_res_steps, ours.data.low_res_size) == (300, 200, 32)
    theirs = recipe.ours_config(bench, config, 300, open_clip_recipe=True)
    assert (theirs.data.low_res_steps, theirs.data.low_res_size, theirs.model.image_size) == (0, 0, 64)
    assert recipe.ours_config(bench, config, 1, open_clip_recipe=False).data.low_res_steps == 0
    timed = []

    lengths = set()

    def fake_run(run_config, out, marks, save_weights=True):
        timed.append((out.name, run_config.model.image_size, run_config.data.low_res_steps))
        lengths.add((run_config.optim.steps, len(marks)))
        step_s = 1.0 if run_config.model.image_size == 64 else 0.4
        return [{"step": s, "train_s": s * step_s} for s in marks]

    monkeypatch.setattr(recipe, "run_ours", fake_run)
    timing = recipe.calibrate(bench, config, tmp_path)
    assert timing["miniclip"] == pytest.approx(1 / 3 * 1.0 + 2 / 3 * 0.4)
    assert timing["miniclip, open_clip recipe"] == pytest.approx(1.0)
    assert sorted(timed) == [("calibrate-miniclip, open_clip recipe-64px", 64, 0), ("calibrate-miniclip-32px", 32, 0),
                             ("calibrate-miniclip-64px", 64, 0)]
    # The book config caches the decoded photos: a first epoch decodes them, and only the steps after it are timed
    # (the fake runs' times are even, so the medians above are the same either way).
    assert config.data.cache_images
    first = recipe.flickr8k_steps_per_epoch(config.data, config.train.seed, config.optim.batch_size)
    assert first == len(recipe.training_set(config)) // config.optim.batch_size > 0
    assert lengths == {(first + 6, first + 6)}
