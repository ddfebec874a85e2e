"""Checking what a run made: the pairwise judge, a person's review, and template tuning."""
