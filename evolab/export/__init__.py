"""Training data out of a run: Alpaca, ShareGPT, OpenAI chat and lineage files."""
