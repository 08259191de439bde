"""Analyses of a trained CLIP: each function returns data (arrays, dataclasses, tables as lists of dicts);
`miniclip.book.viz` draws them.

- `embeddings`: t-SNE / UMAP maps of image and text embeddings together; Flickr8k's ambiguous pairs.
- `attention`: ViT attention per layer and head, attention rollout, ModifiedResNet's attention pool, and a
  localisation score against Shapes' object masks (trained vs initialisation).
- `similarity`: image x caption and image x class-prompt cosine matrices.
- `bias`: gaps between groups of images for prompts, with bootstrap CIs; top-k composition; Flickr8k's
  caption-word proxy; `association` for planted-bias experiments.
- `limitations`: counting, spatial relations and prompt sensitivity, as accuracies against chance.
- `vocabulary`: how many training captions use each class word of a zero-shot benchmark.
"""

from miniclip.analysis.attention import (
                                         attention_rollout,
                                         attnpool_attention,
                                         cls_attention,
                                         fresh_init_like,
                                         image_attention_maps,
                                         localisation_scores,
                                         shapes_localisation,
                                         trained_vs_init,
                                         vit_attention,
)
from miniclip.analysis.bias import association, caption_groups, flickr8k_bias, group_gaps, topk_composition
from miniclip.analysis.embeddings import ambiguous_pairs, flickr8k_ambiguous_map, joint_embedding_map, project_2d
from miniclip.analysis.limitations import (
                                         flickr8k_counting,
                                         prompt_sensitivity,
                                         shapes_counting,
                                         shapes_prompt_sensitivity,
                                         shapes_relations,
                                         swap_count,
)
from miniclip.analysis.similarity import image_class_similarity, image_text_similarity
from miniclip.analysis.vocabulary import caption_word_counts

__all__ = [
    "ambiguous_pairs", "association", "attention_rollout", "attnpool_attention", "caption_groups",
    "caption_word_counts", "cls_attention",
    "flickr8k_ambiguous_map", "flickr8k_bias", "flickr8k_counting", "fresh_init_like",
    "group_gaps", "image_attention_maps", "image_class_similarity", "image_text_similarity", "joint_embedding_map",
    "localisation_scores", "project_2d", "prompt_sensitivity", "shapes_counting", "shapes_localisation",
    "shapes_prompt_sensitivity", "shapes_relations", "swap_count", "topk_composition", "trained_vs_init",
    "vit_attention",
]
