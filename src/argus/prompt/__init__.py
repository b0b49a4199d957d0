"""Prompt understanding: embeddings, the similarity index of cached prompts, the quality scorer, the per-prompt level predictor and its offline profile/train pipeline."""
