"""miniclip: an annotated, runnable reproduction of OpenAI's CLIP."""

from miniclip.loss import ClipLoss, SigLipLoss
from miniclip.model import CLIP, CLIPConfig, build_model, capture_attention
from miniclip.tokenizer import tokenize

__all__ = ["CLIP", "CLIPConfig", "ClipLoss", "SigLipLoss", "build_model", "capture_attention", "tokenize"]
__version__ = "0.1.0"
