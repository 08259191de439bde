"""miniclip: an annotated, runnable reproduction of OpenAI's CLIP.

The package is built in layers. Each layer imports only from the layers above it in this table (lower numbers),
never from a higher one; `tests/test_layers.py` reads this table and checks every import against it.

| layer | modules | what they hold |
|---|---|---|
| 0 | `model`, `loss`, `tokenizer`, `distributed`, `checkpoint`, `config`, `env`, `errors` | CLIP, its loss; runs |
| 1 | `data` | Shapes, Flickr8k, image folders, shards, the web subset, downloads, transforms, streams |
| 2 | `eval` | zero-shot, class names, probes, retrieval, features, robustness, pretrained, the validator |
| 3 | `train` | the trainer; run directories and `train_if_changed` |
| 4 | `analysis`, `experiments` | analyses (return data); the paper's experiments (use analyses, not the reverse) |
| 5 | `bench` | speed of step, data path, evaluation, memory and build, against open_clip and the machine |
| 6 | `book`, `cli` | the book's helpers, plots and diagrams; `python -m miniclip` (neither imports the other) |

The stable interface is re-exported here: `build_model`, `CLIP`, `tokenize`, `ClipLoss`.
"""

from miniclip.loss import ClipLoss, SigLipLoss
from miniclip.model import CLIP, CLIPConfig, build_model, capture_attention
from miniclip.tokenizer import tokenize

__all__ = ["CLIP", "CLIPConfig", "ClipLoss", "SigLipLoss", "build_model", "capture_attention", "tokenize"]
__version__ = "0.1.0"
