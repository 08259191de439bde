"""`bench build --book`'s plumbing: which stages it times, how it reads chapter times, and its table. The long
run itself (a whole `make book`) is never part of the tests."""

from __future__ import annotations

import sys
import time

import nbformat
from jupyter_cache import get_cache

from miniclip.bench import build
from miniclip.experiments.registry import EXPERIMENTS


def test_the_stages_are_make_books_commands_in_its_order():
    stages = build.book_stages(python="py")
    names = [name for name, _ in stages]
    assert names[0] == "install"
    # the Makefile's model list, each trained as `make train` does, then every experiment `make experiments` runs
    assert [c for n, c in stages if n.startswith("model")] == [
        ["py", "-m", "miniclip", "train", "--config", f"configs/cpu-{m}.yaml", "--if-changed"]
        for m in ("shapes", "flickr8k")]
    assert [n for n in names if n.startswith("experiment")] == [f"experiment {e}" for e in EXPERIMENTS]
    assert names[-2:] == ["book (chapters executed)", "book rebuilt, nothing changed"]
    assert stages[-1][1] == ["make", "book", "PROFILE=cpu"]


def test_chapter_times_are_jupyter_caches_records_of_this_build(tmp_path):
    cache = get_cache(str(tmp_path / "cache"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", execution_count=1)])
    path = tmp_path / "07_zeroshot.ipynb"
    nbformat.write(nb, path)
    before = time.time()
    cache.cache_notebook_file(str(path), data={"execution_seconds": 73.5}, check_validity=False)
    assert build.chapter_seconds(tmp_path / "cache", before) == {"07_zeroshot": 73.5}
    assert build.chapter_seconds(tmp_path / "cache", time.time() + 60) == {}  # an older build's record is not counted
    assert build.chapter_seconds(tmp_path / "missing", before) == {}


def test_a_stage_is_timed_with_its_exit_code_and_log(tmp_path):
    ok = build.timed([sys.executable, "-c", "print('hello')"], tmp_path / "logs" / "ok.log")
    failed = build.timed([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert ok["returncode"] == 0 and ok["tail"].strip() == "hello" and ok["seconds"] > 0
    assert (tmp_path / "logs" / "ok.log").read_text().strip() == "hello"
    assert failed["returncode"] == 3 and len(failed["load_after"].split()) == 3


def test_the_table_gives_each_stage_its_share_and_each_chapter_its_minutes():
    stage = {"returncode": 0, "load_after": "2.00 2.00 2.00"}
    results = {"stages": {"nbval": {**stage, "seconds": 60},
                          "model cpu-shapes": {**stage, "seconds": 1800},
                          "book (chapters executed)": {**stage, "seconds": 600, "chapters": {"07_zeroshot": 90.0}},
                          "book rebuilt, nothing changed": {**stage, "seconds": 30}},
               "book_total_seconds": 2400}
    lines = build.stage_table(results).splitlines()

    def row(start: str) -> list[str]:
        return next(line.strip() for line in lines if line.strip().startswith(start))[len(start):].split()

    assert row("model cpu-shapes")[:2] == ["30.0", "75%"]
    assert row("book (chapters executed)")[:2] == ["10.0", "25%"]
    assert row("book rebuilt, nothing changed")[:2] == ["0.5", "0"]  # no share: not part of a build
    assert row("07_zeroshot") == ["1.5"]
    assert row("make book, all stages") == ["40.0"]
