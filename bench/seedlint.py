"""Seed lint on large sets: wall time of `lint_seeds` without embeddings (the ROUGE-L pairs pruned by the
token-count bound) against comparing every pair, on synthetic seeds drawn from the shipped sets' words.

    .venv/bin/python bench/seedlint.py [--sizes 1000,5000,10000] [--full-up-to 2000]

Prints a markdown table. Synthetic rows share one vocabulary and one in ten is a near-copy of an earlier row (one
word changed); "rows found" by comparing every pair must equal lint's near-duplicate rows.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolab.embeddings.novelty import ROUGE_L_MAX, rouge_l_scores  # noqa: E402
from evolab.schema import Seed  # noqa: E402
from evolab.seeds.files import load_example  # noqa: E402
from evolab.seeds.lint import lint_seeds  # noqa: E402


def synthetic(n: int, seed: int = 0) -> list[Seed]:
    rng = random.Random(seed)
    words = " ".join(s.instruction for s in load_example("general") + load_example("finance")).split()
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.1:  # a near-copy of an earlier row: one word changed
            copy = rng.choice(texts).split()
            copy[rng.randrange(len(copy))] = rng.choice(words)
            texts.append(" ".join(copy))
        else:
            texts.append(" ".join(rng.choice(words) for _ in range(rng.randint(8, 30))))
    return [Seed(t, skill="x", difficulty=3) for t in texts]


def every_pair(texts: list[str]) -> int:
    """Rows with an earlier row over ROUGE-L 0.7, comparing each row with every earlier one."""
    found = 0
    for j in range(1, len(texts)):
        found += max(rouge_l_scores(texts[j], texts[:j])) > ROUGE_L_MAX
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--full-up-to", type=int, default=2000, help="also time every pair up to this size")
    args = parser.parse_args()
    lint_seeds(synthetic(50), use_embeddings=False)  # imports and caches out of the timings
    print("| seeds | lint, pruned pairs (s) | near-duplicate rows | every pair (s) | rows found |")
    print("|---:|---:|---:|---:|---:|")
    for n in (int(x) for x in args.sizes.split(",")):
        seeds = synthetic(n)
        start = time.perf_counter()
        report = lint_seeds(seeds, use_embeddings=False)
        pruned = time.perf_counter() - start
        rows = sum(f.kind in ("near_duplicate_rouge", "duplicate") for f in report.findings)  # exact ones too
        full = found = "-"
        if n <= args.full_up_to:
            start = time.perf_counter()
            found = every_pair([s.instruction for s in seeds])
            full = f"{time.perf_counter() - start:.1f}"
        print(f"| {n:,} | {pruned:.1f} | {rows:,} | {full} | {found} |")


if __name__ == "__main__":
    main()
