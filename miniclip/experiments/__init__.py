"""The paper's experiments at small scale, run once and cached (`make experiments`).

- `registry.py`: the table of experiments, in the order `make experiments` runs them;
- `store.py`: settings per profile, configs derived from the base models, cached results and their provenance;
- `runner.py`: `run_experiment(name)`, cached or computed;
- `training.py`, `shapes_eval.py`: short training runs and the Shapes zero-shot check they share;
- `objectives.py`, `sweeps.py`, `planted.py`: the experiments themselves.
"""
