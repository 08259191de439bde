"""The book's sources: paired, output-free notebooks whose code fits the page; a table of contents that names only
real pages; the page helpers (figures kept apart per profile, numbers and tables formatted in code); prose that
speaks to a reader; and a publishing workflow that calls only commands that exist."""

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


def _without_version(text: str) -> str:
    return re.sub(r"^#\s+jupytext_version: .*$", "#     jupytext_version: (any)", text, flags=re.M)


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_every_notebook_is_paired():
    assert SCRIPTS, "no notebooks found"
    assert {p.stem for p in SCRIPTS} == {p.stem for p in NOTEBOOKS.glob("*.ipynb")}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_ipynb_is_in_sync_and_has_no_outputs(script):
    ipynb = jupytext.read(script.with_suffix(".ipynb"))
    assert _cells(jupytext.read(script)) == _cells(ipynb), f"run: jupytext --sync {script}"
    # What `jupytext --sync` would write from the .ipynb is exactly the committed .py: syncing leaves no diff
    # (but for the header's jupytext version, which a new jupytext release changes without changing the content).
    assert (_without_version(jupytext.writes(ipynb, fmt="py:percent")) == _without_version(script.read_text())), \
        f"run: jupytext --sync {script}"
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


# The width the book's code column shows at a 1280 px window (book/_static/custom.css), and ruff's line-length.
CODE_COLUMNS = 120


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_code_cells_fit_the_code_column(script):
    """No notebook code line is wider than the column the book shows it in (the browser test measures the
    rendered pages; this finds the line in the source)."""
    long = [(i, len(line)) for cell in jupytext.read(script).cells if cell.cell_type == "code"
            for i, line in enumerate(cell.source.splitlines(), 1) if len(line) > CODE_COLUMNS]
    assert not long, f"{script.name}: code lines over {CODE_COLUMNS} columns (line in cell, width): {long}"


def test_ruff_line_length_matches_the_code_column():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(rf"^line-length = {CODE_COLUMNS}$", pyproject, re.MULTILINE)


# A MyST role written inside backticks is shown as raw text ("{glue}name``"), not rendered.
ROLE_IN_BACKTICKS = re.compile(r"`\{[a-z:]+\}`[^`\n]*``")


@pytest.mark.parametrize("source", [*SCRIPTS, *(ROOT / "book").glob("*.md")], ids=lambda p: p.stem)
def test_prose_has_no_roles_inside_backticks(source):
    assert not ROLE_IN_BACKTICKS.findall(source.read_text()), f"{source.name}: a role inside backticks"


# The seed report's placeholders are mapped to the book's figures in Appendix D only; everywhere else the
# captions and prose speak to a reader, and no page describes "this machine" (a reader's is another one).
WRITER_NOTES = re.compile(r"seed report|seed's|placeholder|this machine|on this CPU", re.IGNORECASE)


@pytest.mark.parametrize("source", [p for p in [*SCRIPTS, *(ROOT / "book").glob("*.md")]
                                    if p.stem not in ("appendix_d_results", "appendix_e_efficiency")],
                         ids=lambda p: p.stem)
def test_prose_speaks_to_a_reader(source):
    markdown = "\n".join(c.source for c in jupytext.read(source).cells if c.cell_type == "markdown") \
        if source.suffix == ".py" else source.read_text()
    assert not WRITER_NOTES.findall(markdown), f"{source.name}: {sorted(set(WRITER_NOTES.findall(markdown)))}"


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
    # The book's stylesheet (the wide code column) is wired in and exists.
    for static in config["sphinx"]["config"]["html_static_path"]:
        for css in config["sphinx"]["config"]["html_css_files"]:
            assert (ROOT / static / css).exists(), f"{static}/{css} missing"


def test_literalincludes_point_at_real_code():
    """Every `literalinclude` in a chapter names an existing file, every `:pyobject:` exists in it, and every
    start or end marker is on exactly one line of it."""
    include = re.compile(r"```\{literalinclude\} (\S+)\n((?:(?:#\s*)?:[a-z-]+:.*\n)*)")
    sources = [*SCRIPTS, *(ROOT / "book").glob("*.md")]
    found = 0
    for source in sources:
        text = re.sub(r"^# ?", "", source.read_text(), flags=re.MULTILINE) if source.suffix == ".py" else \
            source.read_text()
        for match in include.finditer(text):
            target = (source.parent / match.group(1)).resolve()
            assert target.exists(), f"{source.name}: {match.group(1)} does not exist"
            code = target.read_text()
            # Sphinx cuts at the first line holding a marker: one that also occurs elsewhere (say, in a comment
            # above the code) silently shows the wrong lines.
            for option, marker in re.findall(r":(start-at|start-after|end-at|end-before): (.+)", match.group(2)):
                marker = marker.strip()
                marker = marker[1:-1] if len(marker) > 1 and marker[0] == marker[-1] and marker[0] in "\"'" else marker
                lines = [n for n, line in enumerate(code.splitlines(), 1) if marker in line]
                assert len(lines) == 1, f"{source.name}: :{option}: {marker!r} is on lines {lines} of {match.group(1)}"
            for obj in re.findall(r":pyobject: (\S+)", match.group(2)):
                *outer, name = obj.split(".")
                assert re.search(rf"^\s*(?:def|class) {re.escape(name)}\b", code, re.MULTILINE), \
                    f"{source.name}: {obj} not found in {match.group(1)}"
                for cls in outer:
                    assert re.search(rf"^class {re.escape(cls)}\b", code, re.MULTILINE), f"{obj}: no class {cls}"
            found += 1
    assert found > 10


def test_show_saves_figures_per_profile_and_needs_labels(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    from miniclip.book import pages

    monkeypatch.setenv("MINICLIP_PROFILE", "ci")
    monkeypatch.setitem(pages.FIGURES, "ci", tmp_path / "figures-ci")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("x")
    pages.show(fig, "unit_test_figure")
    assert (tmp_path / "figures-ci" / "unit_test_figure.png").stat().st_size > 0
    assert not (ROOT / "figures" / "unit_test_figure.png").exists(), "a ci figure must not land in figures/"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match="no label"):
        pages.show(fig, "unlabelled")


def test_glue_formats_in_code(monkeypatch):
    import myst_nb

    from miniclip import book

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.update({name: repr(value)}))
    book.glue("accuracy", 0.1234, "{:.1%}")
    assert glued["accuracy"] == "12.3%"  # pasted without quotes or extra digits


def test_glue_pastes_markdown_only_when_asked(monkeypatch):
    import myst_nb
    from IPython.core.formatters import DisplayFormatter

    from miniclip import book

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.update({name: value}))
    book.glue("source", "`runs/x.json`, 3 minutes", markdown=True)
    book.glue("plain", "a_b*c")
    mimes = {name: DisplayFormatter().format(value)[0] for name, value in glued.items()}
    # myst-nb's {glue} role takes text/markdown over text/plain when both exist: the backticks become code
    assert mimes["source"] == {"text/plain": "`runs/x.json`, 3 minutes", "text/markdown": "`runs/x.json`, 3 minutes"}
    assert mimes["plain"] == {"text/plain": "a_b*c"}  # numbers and names are never parsed as Markdown


def test_markdown_table_formats_aligns_and_escapes():
    from IPython.display import Markdown

    from miniclip.book import markdown_table

    table = markdown_table([("a photo of a {}.", 0.1234, 3), {"prompt": "x | y", "top-1": 0.5, "n": None}],
                           ["prompt", "top-1", "n"], formats={"top-1": "{:.1%}"})
    assert isinstance(table, Markdown)  # displayed as rendered Markdown, in Jupyter and in the book
    assert table.data.splitlines() == ["| prompt | top-1 | n |",
                                       "|---|---:|---:|",
                                       "| a photo of a {}. | 12.3% | 3 |",
                                       "| x \\| y | 50.0% |  |"]  # a "|" in a cell cannot split it
    assert markdown_table([("a", "b\nc")], ["x", "y"], align="lc").data.splitlines()[1:] == ["|---|:---:|",
                                                                                           "| a | b c |"]
    with pytest.raises(ValueError, match="align"):
        markdown_table([("a", 1)], ["x", "y"], align="l")
    with pytest.raises(ValueError, match="cells for 2 columns"):
        markdown_table([("a", 1, 2)], ["x", "y"])
    with pytest.raises(ValueError, match="do not exist"):
        markdown_table([("a", 1)], ["x", "y"], formats={"z": "{:.1%}"})


def test_machine_text_names_the_processor_and_threads():
    from miniclip.book import machine_text

    assert machine_text({"processor": "AMD EPYC", "threads": 2, "cuda": None}) == "AMD EPYC, 2 threads"
    assert machine_text({"processor": "", "machine": "x86_64", "threads": 8, "cuda": "H100"}) == \
        "x86_64, 8 threads, GPU H100"


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

    import miniclip.env
    from miniclip.book import pages

    # Configs are found under pages.ROOT; runs under miniclip.env.ROOT (through runs_dir).
    monkeypatch.setattr(miniclip.env, "ROOT", tmp_path)
    monkeypatch.setattr(pages, "ROOT", tmp_path)
    (tmp_path / "configs").mkdir()
    for name in ("ci.yaml", "cpu-shapes.yaml"):
        shutil.copy(ROOT / "configs" / name, tmp_path / "configs" / name)
    for run in ("cpu/shapes", "ci/shapes"):
        (tmp_path / "runs" / run).mkdir(parents=True)
    (tmp_path / "runs" / "ci" / "shapes" / "final.safetensors").touch()  # a cached ci model: nothing to train

    notes = []
    monkeypatch.setattr(pages, "note", notes.append)
    monkeypatch.setenv("MINICLIP_PROFILE", "cpu")
    assert pages.trained_run("shapes") == tmp_path / "runs" / "ci" / "shapes"  # cpu model missing: fall back
    assert len(notes) == 1 and "make train" in notes[0]  # ... and say so on the page
    (tmp_path / "runs" / "cpu" / "shapes" / "final.safetensors").touch()
    assert pages.trained_run("shapes") == tmp_path / "runs" / "cpu" / "shapes"  # present: used as it is
