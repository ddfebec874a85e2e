"""Seed sets: reading files, importing tables, linting, versions, growing and tagging."""
