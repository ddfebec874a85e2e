"""Sentence embeddings, their thresholds, and novelty/diversity measures built on them."""
