# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The experiments
#
# The paper's argument rests on experiments that compare training choices: objectives (§2.3, Fig. 2), image
# encoders (§3.2, Fig. 10), hyper-parameters tuned on small models (§2.5), and, for the analysis, probes whose
# answers must be checked against known ground truth. Each needs several trainings, too many to hide inside a
# chapter, so they live in one command:
#
# ```bash
# make experiments                              # all six, cached; an unchanged experiment is not rerun
# python -m miniclip experiments objectives     # just one
# python -m miniclip experiments --force noisy  # rerun one whose result exists
# ```
#
# Each experiment writes `runs/<profile>/experiments/<name>.json`: its result, and the provenance that says how
# it was produced (settings, commit, machine, wall time and the machine's load). The chapters read those files
# and show a note when one is missing. This appendix lists them all, with their settings and cost.
#
# ## The code
#
# The runner caches each result under its settings, so that a changed setting reruns only that experiment:
#
# ```{literalinclude} ../miniclip/experiments/runner.py
# :pyobject: run_experiment
# ```
#
# and the settings of the `cpu` profile, with what was scaled down and why next to each experiment:
#
# ```{literalinclude} ../configs/experiments/cpu.yaml
# :language: yaml
# ```
#
# ## Run it

# %%
from IPython.display import Markdown, display

from miniclip.book import experiment, glue, profile
from miniclip.experiments.registry import EXPERIMENTS

WHERE = {"objectives": ("Contrastive vs predictive objectives (Fig. 2)", "03_contrastive"),
         "encoders": ("ViT vs ModifiedResNet on Flickr8k; the attention chapter's ViTs", "04_architecture"),
         "lr_batch": ("Learning rate × batch size at equal samples seen", "06_training"),
         "throughput": ("Training throughput against batch size, fp32 vs bf16", "06_training"),
         "planted": ("A word planted at known rates, recovered by the bias probe", "13_bias"),
         "noisy": ("Mismatched captions against held-out zero-shot accuracy", "14_limitations")}
assert set(WHERE) == set(EXPERIMENTS), "every experiment is described here"

results = {name: experiment(name) for name in EXPERIMENTS}
rows, total = [], 0.0
for name, found in results.items():
    what, chapter = WHERE[name]
    if found is None:
        rows.append(f"| `{name}` | {what} | {{doc}}`{chapter}` | not computed | | |")
        continue
    p = found["provenance"]
    total += p["wall_s"]
    load = p.get("load_average_before")
    rows.append(f"| `{name}` | {what} | {{doc}}`{chapter}` | {p['wall_s'] / 60:.1f} min | "
                f"{load[0]:.1f} | {p['finished'][:16].replace('T', ' ')}, commit {str(p['git_commit'])[:8]} |"
                if load else
                f"| `{name}` | {what} | {{doc}}`{chapter}` | {p['wall_s'] / 60:.1f} min | | {p['finished'][:16]} |")
display(Markdown("| experiment | what it measures | chapter | wall time | load before | finished |\n"
                 "|---|---|---|---:|---:|---|\n" + "\n".join(rows)))
glue("experiments_total", total / 60, "{:.0f}")
glue("experiments_profile", profile())
glue("experiments_missing", ", ".join(f"`{n}`" for n, r in results.items() if r is None) or "none")

# %% [markdown]
# In the `{glue}`experiments_profile`` profile the experiments that have run took {glue}`experiments_total`
# minutes of wall time together (missing: {glue}`experiments_missing`). The load average is that of the machine
# when each started: on a 2-core machine, a load above 2 means something else was running and the wall times
# (and the throughput experiment's numbers) are slower than the machine can do.
#
# What was scaled down, and by how much, is written beside each experiment in the settings above. The
# largest reductions are in training length: the objectives see 12,800 pictures each (the paper's curves run
# to 400 million), and the encoder variants train for about two epochs of Flickr8k. That is why the chapters
# read these results as directions and sanity checks, never as estimates of the paper's numbers.
