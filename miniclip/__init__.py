"""miniclip: an annotated, runnable reproduction of OpenAI's CLIP.

The package is built in layers. Each layer imports only from the layers above it in this table (lower numbers),
never from a higher one; `tests/test_layers.py` reads this table and checks every import against it.

| layer | modules | what they hold |
|---|---|---|
| 0 | `model`, `loss`, `tokenizer`, `distributed`, `checkpoint`, `config`, `env` | the core: CLIP itself, its objective and tokenizer, data parallelism, checkpoints, configs, where things live and what ran them |
| 1 | `data` | Shapes, Flickr8k, image folders, webdataset shards, the web subset, downloads, transforms, training streams |
| 2 | `eval` | zero-shot, class names, probes, retrieval, cached features, robustness, pretrained weights, the trainer's validator |
| 3 | `train` | the trainer; run directories and `train_if_changed` |
| 4 | `analysis`, `experiments` | analyses that return data; the paper's experiments at small scale (which may use analyses, never the reverse) |
| 5 | `bench` | speed: training step, data path, evaluation, memory, build, against open_clip and the machine's peak |
| 6 | `book`, `cli` | presentation: the book's helpers, plots and diagrams; `python -m miniclip` (neither imports the other) |

The stable interface is re-exported here: `build_model`, `CLIP`, `tokenize`, `ClipLoss`.
"""

from miniclip.loss import ClipLoss, SigLipLoss
from miniclip.model import CLIP, CLIPConfig, build_model, capture_attention
from miniclip.tokenizer import tokenize

__all__ = ["CLIP", "CLIPConfig", "ClipLoss", "SigLipLoss", "build_model", "capture_attention", "tokenize"]
__version__ = "0.1.0"
