"""open_clip's own trainer (`open_clip_train.main`), run as its users run it, with three read-only taps for the
recipe bench (`miniclip.bench.recipe`): run as `python -m miniclip.bench.open_clip_run SPEC.json`.

SPEC.json holds `model_config` (an open_clip model config, registered under the name `model_name`),
`argv` (open_clip_train's own command line), `out` (a folder), `snapshot_steps` (steps after which to copy
the weights) and `save_weights` (false: only time those steps, for calibration). The taps change nothing
open_clip computes:

- the weights after each step in `snapshot_steps` and after the last step are written as safetensors
  (`step<N>.safetensors`, open_clip's parameter names, which are CLIP's) with the training seconds elapsed
  so far (`Snapshots`, as for our trainer); the clock starts with the first epoch;
- with `record_seen`, every CSV row the data loader reads is appended to `seen.txt` (one row index a line), so a
  test can check which images and captions the model saw.

open_clip still writes its own `.pt` checkpoint at the end, as it always does; nothing here ever loads it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from miniclip.bench.recipe import Snapshots
from miniclip.bench.reference import require_open_clip


def _tap_rows(csv_dataset_class, seen_path: Path) -> None:
    """Append each row index the CSV dataset serves to `seen_path` (loader workers append too)."""
    original = csv_dataset_class.__getitem__

    def getitem(self, index):
        with open(seen_path, "a") as f:
            f.write(f"{index}\n")
        return original(self, index)

    csv_dataset_class.__getitem__ = getitem


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    open_clip = require_open_clip()
    config_path = out / f"{spec['model_name']}.json"
    config_path.write_text(json.dumps(spec["model_config"]))
    open_clip.add_model_config(config_path)

    import open_clip_train.data as oc_data  # the optional trainer, imported only here
    import open_clip_train.main as oc_main

    if spec.get("record_seen"):
        _tap_rows(oc_data.CsvDataset, out / "seen.txt")
    snapshots = Snapshots(out, spec["snapshot_steps"], spec.get("save_weights", True))
    train_one_epoch = oc_main.train_one_epoch

    def tapped_epoch(model, data, loss, epoch, optimizer, scaler, scheduler, dist_model, args, tb_writer=None):
        steps_per_epoch = data["train"].dataloader.num_batches // args.accum_freq

        def schedule(step):  # open_clip calls this before step `step`, i.e. after `step` updates
            if step in snapshots.steps:
                snapshots.take(model, step)
            return scheduler(step)

        snapshots.start()
        train_one_epoch(model, data, loss, epoch, optimizer, scaler, schedule, dist_model, args, tb_writer=tb_writer)
        if epoch + 1 == args.epochs:
            snapshots.take(model, steps_per_epoch * args.epochs)

    oc_main.train_one_epoch = tapped_epoch
    code = oc_main.main(spec["argv"])
    return 0 if code in (None, 0) else int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
