"""Evaluation of a CLIP, trained here or pretrained: what the book measures and the trainer monitors.

- `zeroshot.py`: classifiers from class-name prompts, template sets, multilingual fusion;
- `classnames.py`: readable and translated class names for image folders, and the templates that fit them;
- `probes.py`: linear and few-shot probes, retrieval recall;
- `features.py`: frozen image features, computed once and cached on disk;
- `robustness.py`: accuracy under corruptions and style shift, effective robustness;
- `pretrained.py`: OpenAI's released weights through open_clip, when they can be loaded;
- `validator.py`: the small validation the trainer runs along a run.
"""
