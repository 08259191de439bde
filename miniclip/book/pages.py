"""Helpers the book's notebooks share: which profile is running, where its results live, the trained models
it reads, and the one way every figure and every number reaches the page.

- `profile()` / `runs_dir()`: the profile (`MINICLIP_PROFILE`) and `runs/<profile>/`.
- `trained_model(name)`: the cached checkpoint of `make train` (cpu profile), or a tiny model trained on the
  spot (ci profile, or a missing cpu checkpoint, said so on the page): a notebook never hides long work and
  never crashes on a fresh clone.
- `show(fig, name)`: saves a matplotlib figure to `figures/<name>.png` and glues it for a captioned
  `{glue:figure}` in the prose.
- `glue(name, value, fmt)`: a number, formatted in code, pasted into the prose with a `{glue}` role.
- `markdown_table(rows, columns)`: every table a chapter computes, as rendered Markdown.

Notebook-only state stays in the notebooks; this module holds what more than one chapter needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from miniclip.checkpoint import load_model, read_metadata
from miniclip.config import load_config
from miniclip.data.loaders import shapes_world_of_run
from miniclip.data.paths import MissingDataError
from miniclip.env import ROOT, profile
from miniclip.experiments.registry import OPTIONAL_EXPERIMENTS
from miniclip.experiments.runner import run_experiment
from miniclip.experiments.store import experiment_settings, load_cached, results_path
from miniclip.train.runs import run_dir, train_if_changed

# Committed figures come from a full cpu-profile build; every other profile writes elsewhere, so a ci or a gpu
# build never overwrites them.
FIGURES = {name: ROOT / "_build" / f"figures-{name}" for name in ("ci", "gpu", "gpu-1m")}
DEFAULT_FIGURES = ROOT / "figures"


def figures_dir() -> Path:
    """figures/ for the cpu profile; _build/figures-<profile>/ for the others."""
    path = FIGURES.get(profile(), DEFAULT_FIGURES)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------- trained models


# The gpu-1m book is the gpu book whose real-photo model is the 1M-pair web model of Appendix F.
WEB_MODEL = ROOT / "configs" / "gpu-1m.yaml"


def config_path(name: str) -> Path:
    """The config that trains model `name` ("shapes" or "flickr8k", the real-photo model) in this profile:
    configs/ci.yaml (the only ci model, on Shapes), configs/gpu-1m.yaml for gpu-1m's real-photo model, else
    configs/<profile>-<name>.yaml (gpu-1m's Shapes model is the gpu profile's)."""
    if profile() == "ci":
        return ROOT / "configs" / "ci.yaml"
    if profile() == "gpu-1m":
        return WEB_MODEL if name == "flickr8k" else ROOT / "configs" / f"gpu-{name}.yaml"
    return ROOT / "configs" / f"{profile()}-{name}.yaml"


def make(target: str) -> str:
    """The command that makes `target` for this profile: `make train`, or `make train PROFILE=gpu`."""
    return f"make {target}" + ("" if profile() == "cpu" else f" PROFILE={profile()}")


def trained_run(name: str = "shapes") -> Path:
    """The run directory of model `name` ("shapes" or "flickr8k") in this profile, with a `final` checkpoint.

    Load the checkpoint if present, else train the small version: in the ci profile the tiny Shapes model is
    trained here when absent (seconds; `name` is ignored, since the ci profile has only that model). In the
    other profiles the models come from `make train` (which `make book` runs first): training them inside a
    notebook would hide tens of minutes of work in a cell. If one is missing anyway (a reader running a
    notebook by hand), the page says so visibly and falls back to the ci model.
    """
    config = load_config(config_path(name))
    out = run_dir(config)
    if (out / "final.safetensors").exists():
        return out
    if config_path(name) == WEB_MODEL:
        note(f"The 1M-pair web model (`{out.relative_to(ROOT)}/final.safetensors`) has not been trained on this "
             "machine (Appendix F gives the commands). The real-photo results on this page come from "
             "the gpu profile's Flickr8k model instead.")
        config = load_config(ROOT / "configs" / "gpu-flickr8k.yaml")
        out = run_dir(config)
        if (out / "final.safetensors").exists():
            return out
    if profile() != "ci":
        note(f"`{out.relative_to(ROOT)}/final.safetensors` is missing: train it with `{make('train')}` "
             f"(tens of minutes, cached). This page falls back to the tiny ci model, trained now in seconds; "
             "its numbers are smoke, not results.")
        config = load_config(ROOT / "configs" / "ci.yaml")
        out = run_dir(config)
        if (out / "final.safetensors").exists():
            return out
    train_if_changed(config, out, progress=False)
    return out


def trained_model(name: str = "shapes"):
    """The trained CLIP of `trained_run(name)`, in eval mode, on the GPU when there is one."""
    return load_model(trained_run(name) / "final", "auto")


def trained_shapes_world():
    """This profile's trained Shapes model, the world it trained in (its held-out pairs, languages, seed) and
    its run config: `(model, world, config)`."""
    run = trained_run("shapes")  # once: a missing checkpoint's note must not show twice
    config = read_metadata(run / "final")["config"]
    return load_model(run / "final", "auto"), shapes_world_of_run(config), config


# --------------------------------------------------------------------------------------------- figures and numbers


class _Pasted:
    """A value whose only representation is its text, so `{glue}` pastes it without quotes."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _PastedMarkdown(_Pasted):
    """Text that is Markdown (`code`, *emphasis*, links): `{glue}` prefers this representation, so it renders."""

    def _repr_markdown_(self) -> str:
        return self.text


def glue(name: str, value, fmt: str = "{}", markdown: bool = False) -> None:
    """Glue `fmt.format(value)` under `name`, for a `{glue}` role naming it in the prose.

    The formatting lives in the code next to the computation, so the prose never types a number. With
    `markdown=True` the text is pasted as inline Markdown (backticks become code), else as plain text.
    """
    from myst_nb import glue as nb_glue  # the book's builder: imported only when a page is being made

    pasted = (_PastedMarkdown if markdown else _Pasted)(fmt.format(value))
    nb_glue(name, pasted, display=False)


def machine_text(machine: dict) -> str:
    """The machine a timing was measured on, in words, from the `machine` record of a run's or an experiment's
    provenance (`miniclip.env.machine`): processor, threads, and the GPU when there was one."""
    processor = machine.get("processor") or machine.get("machine") or "an unknown processor"
    gpu = f", GPU {machine['cuda']}" if machine.get("cuda") else ""
    return f"{processor}, {machine.get('threads', '?')} threads{gpu}"


def show(fig, name: str) -> None:
    """Save `fig` as <figures>/<name>.png and glue it under `name` for a `{glue:figure}` with a caption.

    Every figure in the book goes through here, so the committed `figures/` is exactly what the book shows.
    """
    import matplotlib.pyplot as plt  # plotting and the book's builder: imported only when a page is being made
    from myst_nb import glue as nb_glue

    for ax in fig.axes:  # a figure without labelled axes cannot be read on its own
        if ax.axison and ax.get_visible() and not (ax.get_xlabel() or ax.get_ylabel() or ax.get_title()):
            raise ValueError(f"figure {name!r}: an axis has no label or title")
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    nb_glue(name, fig, display=False)
    plt.close(fig)  # shown once, where the prose places it, not again as this cell's output


def markdown_table(rows: Iterable[Sequence | Mapping], columns: Sequence[str], *, align: str | None = None,
                   formats: Mapping[str, str] | None = None):
    """A table a chapter computed, as Markdown the page renders (an IPython `Markdown` object: display it, or
    leave it as a cell's last expression).

    Each row is a sequence of cells in the order of `columns`, or a mapping from column name to cell. `formats`
    maps a column to a format string for its cells (`{"top-1": "{:.1%}"}`); other cells are written with `str`,
    and None leaves a cell empty. `align` holds one letter per column, `l`, `r` or `c`; by default the first
    column is left-aligned and the others right-aligned, the usual layout of a label followed by its numbers.
    A `|` or a line break inside a cell is escaped, so no cell can break the table.
    """
    from IPython.display import Markdown  # notebook display: imported only when a page is being made

    columns = list(columns)
    align = align or "l" + "r" * (len(columns) - 1)
    if len(align) != len(columns) or set(align) - set("lrc"):
        raise ValueError(f"align needs one of l, r, c per column ({len(columns)}), not {align!r}")
    formats = dict(formats or {})
    if set(formats) - set(columns):
        raise ValueError(f"formats names columns that do not exist: {sorted(set(formats) - set(columns))}")

    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    def cell(value, column: str) -> str:
        if value is None:
            return ""
        return escape(formats[column].format(value) if column in formats else str(value))

    lines = ["| " + " | ".join(escape(c) for c in columns) + " |",
             "|" + "|".join({"l": "---", "r": "---:", "c": ":---:"}[a] for a in align) + "|"]
    for row in rows:
        values = [row[c] for c in columns] if isinstance(row, Mapping) else list(row)
        if len(values) != len(columns):
            raise ValueError(f"a row has {len(values)} cells for {len(columns)} columns: {values!r}")
        lines.append("| " + " | ".join(cell(v, c) for v, c in zip(values, columns)) + " |")
    return Markdown("\n".join(lines))


def note(text: str) -> None:
    """A visible note box in the rendered page (and in Jupyter), for what a reader must not miss."""
    from IPython.display import Markdown, display  # notebook display: imported only when a page is being made

    display(Markdown(f"```{{note}}\n{text}\n```"))


def data_note(error: Exception) -> None:
    """Say visibly, in the rendered page, that real data is missing and what the chapter does instead."""
    note(f"Real data is not available here: {error}\nThis section goes on with the Shapes world instead.")


CI_NOTE = "The ci profile has only a tiny Shapes model trained for seconds: its numbers are smoke, not results."


def real_or_shapes(real, shapes, ci_note: str | None = CI_NOTE):
    """What a chapter runs on: `real()` (a trained model on real data), or `shapes()` where that cannot be.

    The ci profile always takes `shapes()`, saying so with `ci_note` (None when the page said it already); the
    other profiles fall back to `shapes()` when `real()` finds its data missing, and the page says that too."""
    if profile() == "ci":
        if ci_note:
            note(ci_note)
        return shapes()
    try:
        return real()
    except MissingDataError as e:
        data_note(e)
        return shapes()


# --------------------------------------------------------------------------------------------- experiments


def experiment(name: str) -> dict | None:
    """The cached result of `make experiments`' experiment `name`, computed with this profile's settings.

    In the ci profile a missing result is computed now (its settings take seconds). In the others the
    experiments are tens of CPU-minutes, so the page says they have not run (and how to run them) and gets
    None; the caller then shows `not_computed` stand-ins instead of a figure."""
    result = load_cached(name, profile(), experiment_settings(profile())[name])  # gpu-1m reads gpu's results
    if result is None and profile() == "ci":
        try:
            result = run_experiment(name, "ci", verbose=False)
        except MissingDataError as e:
            note(f"Real data is not available here: {e}\nThe `{name}` experiment needs it, so what depends on "
                 "it below is left empty.")
            return None
    if result is None:
        one = f"python -m miniclip experiments {name}" + ("" if profile() == "cpu" else f" --profile {profile()}")
        how = (f"it is an opt-in experiment, which `{make('experiments')}` leaves out for its cost: run `{one}`"
               if name in OPTIONAL_EXPERIMENTS else f"run `{make('experiments')}` (or just this one: `{one}`)")
        note(f"`{results_path(name, profile()).relative_to(ROOT)}` is missing, damaged, or was computed with other "
             f"settings: {how}. What depends on it below is left empty until then.")
    return result


def not_computed(figure: str, glue_names: tuple[str, ...] = (),
                 reason: str = "run `make experiments` (see the note above)") -> None:
    """Stand-ins for results that do not exist yet: an empty figure that says so (and why) under `figure`,
    and "(not computed)" under every name in `glue_names`, so the page still builds and reads honestly."""
    import matplotlib.pyplot as plt  # plotting: imported only when a page is being made

    fig, ax = plt.subplots(figsize=(5, 1.2))
    ax.set_title(f"not computed: {reason}")
    ax.set_axis_off()
    show(fig, figure)
    for name in glue_names:
        glue(name, "(not computed)")
