"""The table of experiments: name -> `run(settings, profile) -> result dict`.

`make experiments` (or `python -m miniclip experiments [NAME …]`) runs them in the table's order, cheapest
first; results land in runs/<profile>/experiments/<name>.json.

| name | what it measures | module |
|---|---|---|
| objectives | zero-shot accuracy vs samples seen: contrastive, bag-of-words, captioning LM (Fig. 2) | objectives.py |
| encoders | ResNet/ViT image x causal/BERT-style text, 2 seeds (Flickr8k, CIFAR-10); attention's ViTs | sweeps.py |
| lr_batch | a learning-rate x batch-size grid: validation loss and zero-shot | sweeps.py |
| throughput | training steps/s and samples/s against batch size, fp32 vs bf16 | sweeps.py |
| planted | a word planted at rate p: the probe's association rises with p (slope) | planted.py |
| noisy | a fraction of mismatched captions: held-out zero-shot | planted.py |
| relations | true vs swapped relation captions, fine-tuned without and with swapped negatives | relations.py |
| recipe | opt-in, not in `make experiments`: the real-photo recipe's levers, several seeds each | sweeps.py |

Settings per profile are in configs/experiments/<profile>.yaml; models derive from the base training configs.
"""

from miniclip.experiments import objectives, planted, relations, sweeps

# name -> run(settings, profile) -> result dict; `make experiments` runs them in this order (cheapest first)
EXPERIMENTS = {
    "throughput": sweeps.run_throughput,
    "lr_batch": sweeps.run_lr_batch,
    "planted": planted.run_planted,
    "noisy": planted.run_noisy,
    "relations": relations.run,
    "objectives": objectives.run,
    "encoders": sweeps.run_encoders,
}

# Experiments that `make experiments` leaves out because they cost hours on a CPU; run them by name
# (`python -m miniclip experiments recipe`). The book shows their results when they exist.
OPTIONAL_EXPERIMENTS = {
    "recipe": sweeps.run_recipe,
}
ALL_EXPERIMENTS = {**EXPERIMENTS, **OPTIONAL_EXPERIMENTS}
