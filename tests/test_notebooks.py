"""The book's sources: paired, output-free notebooks; a table of contents that names only real pages; a figure
helper that keeps ci figures apart; and a publishing workflow that calls only commands that exist."""

import re
import shlex
from pathlib import Path

import jupytext
import matplotlib
import pytest
import yaml

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("*.py"))


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_every_notebook_is_paired():
    assert SCRIPTS, "no notebooks found"
    assert {p.stem for p in SCRIPTS} == {p.stem for p in NOTEBOOKS.glob("*.ipynb")}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_ipynb_is_in_sync_and_has_no_outputs(script):
    ipynb = jupytext.read(script.with_suffix(".ipynb"))
    assert _cells(jupytext.read(script)) == _cells(ipynb), f"run: jupytext --sync {script}"
    # What `jupytext --sync` would write from the .ipynb is exactly the committed .py: syncing leaves no diff.
    assert jupytext.writes(ipynb, fmt="py:percent") == script.read_text(), f"run: jupytext --sync {script}"
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{script.stem} has outputs"
    assert "ipynb" in ipynb.metadata["jupytext"]["formats"] and "py:percent" in ipynb.metadata["jupytext"]["formats"]


def _toc_files(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root"):
                yield value
            else:
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def test_toc_names_only_existing_pages():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = list(_toc_files(toc))
    assert files and len(files) == len(set(files))
    for name in files:
        assert any((ROOT / f"{name}{suffix}").exists() for suffix in (".md", ".ipynb")), f"_toc.yml: {name} missing"


def test_config_requirements():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["only_build_toc_files"] is True
    assert config["execute"]["execute_notebooks"] == "cache"
    assert config["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert config["bibtex_bibfiles"] == ["book/references.bib"]
    # MathJax is served from the book itself, not a CDN.
    assert not config["sphinx"]["config"]["mathjax_path"].startswith(("http:", "https:", "//"))
    for generated in ("_build", "runs", ".jupyter_cache", "figures"):
        assert generated in config["exclude_patterns"]


def test_literalincludes_point_at_real_code():
    """Every `literalinclude` in a chapter names an existing file, and every `:pyobject:` exists in it."""
    include = re.compile(r"```\{literalinclude\} (\S+)\n((?:(?:#\s*)?:[a-z-]+:.*\n)*)")
    sources = [*SCRIPTS, *(ROOT / "book").glob("*.md")]
    found = 0
    for source in sources:
        text = re.sub(r"^# ?", "", source.read_text(), flags=re.MULTILINE) if source.suffix == ".py" else \
            source.read_text()
        for match in include.finditer(text):
            target = (source.parent / match.group(1)).resolve()
            assert target.exists(), f"{source.name}: {match.group(1)} does not exist"
            for obj in re.findall(r":pyobject: (\S+)", match.group(2)):
                *outer, name = obj.split(".")
                code = target.read_text()
                assert re.search(rf"^\s*(?:def|class) {re.escape(name)}\b", code, re.MULTILINE), \
                    f"{source.name}: {obj} not found in {match.group(1)}"
                for cls in outer:
                    assert re.search(rf"^class {re.escape(cls)}\b", code, re.MULTILINE), f"{obj}: no class {cls}"
            found += 1
    assert found > 10


def test_show_saves_figures_per_profile_and_needs_labels(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    from miniclip import book

    monkeypatch.setenv("MINICLIP_PROFILE", "ci")
    monkeypatch.setitem(book.FIGURES, "ci", tmp_path / "figures-ci")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("x")
    book.show(fig, "unit_test_figure")
    assert (tmp_path / "figures-ci" / "unit_test_figure.png").stat().st_size > 0
    assert not (ROOT / "figures" / "unit_test_figure.png").exists(), "a ci figure must not land in figures/"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match="no label"):
        book.show(fig, "unlabelled")


def test_glue_formats_in_code(monkeypatch):
    import myst_nb

    from miniclip import book

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.update({name: repr(value)}))
    book.glue("accuracy", 0.1234, "{:.1%}")
    assert glued["accuracy"] == "12.3%"  # pasted without quotes or extra digits


# --------------------------------------------------------------------------------------------- publishing

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _workflow_commands() -> list[str]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return [line.strip() for job in workflow["jobs"].values() for step in job["steps"]
            for line in step.get("run", "").splitlines() if line.strip()]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def test_pages_workflow_parses_and_deploys_the_built_book():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    uses = {step.get("uses", "").split("@")[0] for step in steps}
    assert {"actions/checkout", "actions/upload-pages-artifact", "actions/deploy-pages"} <= uses
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    assert workflow["permissions"]["pages"] == "write"


def test_every_command_the_workflow_runs_exists():
    from miniclip.cli import build_parser

    commands = _workflow_commands()
    assert any(c == "make book" for c in commands)
    downloads = set()
    for command in commands:
        words = shlex.split(command)
        if words[0] == "make":
            assert set(words[1:]) <= _make_targets(), f"{command}: no such Makefile target"
        elif "-m" in words and words[words.index("-m") + 1] == "miniclip":
            args = words[words.index("-m") + 2:]
            build_parser().parse_args(args)  # exits (SystemExit) on an unknown command or argument
            if args[:2] == ["data", "download"]:
                downloads.add(args[2])
        else:
            pytest.fail(f"unexpected command in the workflow: {command}")
    assert {"flickr8k", "cifar10"} <= downloads


def test_make_publish_uses_ghp_import():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\npublish:", 1)[1].split("\n\n", 1)[0]
    assert "ghp-import" in recipe and "_build/html" in recipe


def test_trained_run_loads_cached_checkpoints_and_falls_back_visibly(monkeypatch, tmp_path):
    import shutil

    from miniclip import book

    monkeypatch.setattr(book, "ROOT", tmp_path)
    (tmp_path / "configs").mkdir()
    for name in ("ci.yaml", "cpu-shapes.yaml"):
        shutil.copy(ROOT / "configs" / name, tmp_path / "configs" / name)
    for run in ("cpu/shapes", "ci/shapes"):
        (tmp_path / "runs" / run).mkdir(parents=True)
    (tmp_path / "runs" / "ci" / "shapes" / "final.safetensors").touch()  # a cached ci model: nothing to train

    notes = []
    monkeypatch.setattr(book, "note", notes.append)
    monkeypatch.setenv("MINICLIP_PROFILE", "cpu")
    assert book.trained_run("shapes") == tmp_path / "runs" / "ci" / "shapes"  # cpu model missing: fall back
    assert len(notes) == 1 and "make train" in notes[0]  # ... and say so on the page
    (tmp_path / "runs" / "cpu" / "shapes" / "final.safetensors").touch()
    assert book.trained_run("shapes") == tmp_path / "runs" / "cpu" / "shapes"  # present: used as it is
