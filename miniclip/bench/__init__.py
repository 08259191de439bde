"""Benchmarks: how fast miniclip trains and evaluates, against open_clip and against this machine's ceiling.

`python -m miniclip bench all` runs the suite and prints one summary table; each part also runs alone
(`miniclip.cli.bench`). The modules, by what they measure:

- `suite`:      `SuiteConfig` and `run_all`, the whole suite, and its summary table;
- `step`:       one training step (forward, symmetric loss, backward, AdamW), ours against open_clip on the same
                architecture, weights and real captions, eager and compiled, with each of our optimisations
                switched off in turn (ablations); also its peak memory alone (`run_memory_bench`);
- `flops`:      the step's FLOPs, counted analytically and by torch, and its MFU against the matmul peak;
- `memory`:     resident memory (now and peak) and the peak memory of one step (and `torch.cuda`'s);
- `data_path`:  Flickr8k decode+augment (and from a decoded uint8 cache), shard reading and Shapes rendering,
                against what a cpu-profile training step consumes;
- `evaluation`: zero-shot classification and retrieval throughput;
- `build`:      how long `pytest --nbval notebooks` (and, asked for, `make book`) take; recorded, never gated;
- `results`:    where the JSON results go (runs/bench/);
- `reference`:  open_clip as an oracle: reference models with seeded, perturbed weights (tests use it too).

Speed is only measured here, as ratios taken in one run with the contenders interleaved round by round, so
that machine noise (other processes, thermal state) hits all of them alike. Tests never time anything.
See bench/README.md for what each number means.
"""
