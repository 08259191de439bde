"""miniclip: an annotated, runnable reproduction of OpenAI's CLIP."""

from miniclip.model import CLIP, CLIPConfig, build_model, capture_attention

__all__ = ["CLIP", "CLIPConfig", "build_model", "capture_attention"]
__version__ = "0.1.0"
