"""What the book's notebooks share (the top layer: it may import everything below it, never `miniclip.cli`).

- `pages.py`: the profile's trained models and experiment results, and the one way every figure, number,
  table and note reaches a page (`show`, `glue`, `markdown_table`, `note`);
- `viz.py`: the plots (each returns a matplotlib figure with labelled axes);
- `diagrams.py`: conceptual diagrams drawn from the model's config.

Notebooks import the page helpers from here: `from miniclip.book import glue, show, trained_model`.
"""

from miniclip.book.pages import (
    CI_NOTE,
    DEFAULT_FIGURES,
    FIGURES,
    config_path,
    data_note,
    experiment,
    figures_dir,
    glue,
    machine_text,
    markdown_table,
    not_computed,
    note,
    real_or_shapes,
    show,
    trained_model,
    trained_run,
    trained_shapes_world,
)
from miniclip.env import ROOT, profile, runs_dir
from miniclip.train.runs import read_metrics

__all__ = ["CI_NOTE", "DEFAULT_FIGURES", "FIGURES", "ROOT", "config_path", "data_note", "experiment",
           "figures_dir", "glue", "machine_text", "markdown_table", "not_computed", "note", "profile", "read_metrics",
           "real_or_shapes", "runs_dir", "show", "trained_model", "trained_run", "trained_shapes_world"]
