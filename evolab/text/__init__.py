"""Reading text: model replies, refusals, complexity measures and a language guess (no embeddings)."""
