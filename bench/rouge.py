"""ROUGE-L speed: one text against thousands (what --dedup, seed growing and seed lint do per candidate).

    .venv/bin/python bench/rouge.py [--texts 5000]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolab.embeddings import novelty  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=5000)
    args = ap.parse_args()
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(15, 60))) for _ in range(args.texts)]
    novelty.tokenize.cache_clear()
    start = time.perf_counter()
    novelty.rouge_l_scores(texts[0], texts[1:])  # no pruning: every comparison runs
    cold = time.perf_counter() - start
    start = time.perf_counter()
    novelty.max_rouge_l(texts[1], texts[2:])
    warm = time.perf_counter() - start
    n = len(texts) - 1
    print(f"rouge_l_scores, 1 x {n} texts (tokenising them): {cold:.3f} s ({n / cold:,.0f} pairs/s)")
    print(f"max_rouge_l,    1 x {n - 1} texts (tokens cached):  {warm:.3f} s ({(n - 1) / warm:,.0f} pairs/s)")


if __name__ == "__main__":
    main()
