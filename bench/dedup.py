"""How many in-depth children `--dedup` removes on the shipped finance seeds.

Runs `evolab/data/finance.jsonl` for 3 rounds with the scripted model (in-process, no network): its in-depth
child keeps every word of its parent and adds a clause, as in-depth evolution does ("add constraints",
"deepen" ...), so ROUGE-L between a child and its own parent is high while the child is a real evolution.
Prints the share of in-depth children eliminated as `duplicate`.

    .venv/bin/python bench/dedup.py                      # this checkout
    .venv/bin/python bench/dedup.py --repo /tmp/old      # another checkout of evolab (e.g. before the fix)

The scripted model is the extreme case (it keeps the parent's words verbatim); real models paraphrase more,
so the share they lose is lower. The point is the difference between comparing with one's own ancestors
and not.

`--scale` measures instead what `--dedup` costs as the pool grows: a synthetic pool of 10,000 and 100,000
instructions (words drawn from a Zipf vocabulary, so common words are shared as in real text, 8-40 words each)
and 1,000 children (half rewrites of pool members, half new); each child's highest ROUGE-L with the pool, exact
(every pool text compared) against MinHash LSH + ROUGE-L (evolab/embeddings/novelty.py), and how often the two
make the same keep/drop decision at 0.7. The exact check is timed on a sample of the children at 100,000 (it
would take about 40 minutes for all 1,000) and given per 1,000 children.

    .venv/bin/python bench/dedup.py --scale                       # pools of 10,000 and 100,000
    .venv/bin/python bench/dedup.py --scale --pools 10000 --exact-sample 1000
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def synthetic_instructions(n: int, seed: int = 0, vocabulary: int = 5000) -> list[str]:
    """n instructions of 8-40 words from a Zipf vocabulary (the frequent words are shared, like "the")."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ten", "ra", "so", "vi", "den", "pu", "ex", "qua", "bri", "no", "tor", "ul"]
    words = list(dict.fromkeys("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
                               for _ in range(vocabulary * 2)))[:vocabulary]
    weights = [1 / (k + 1) for k in range(len(words))]
    return [" ".join(rng.choices(words, weights, k=rng.randint(8, 40))) for _ in range(n)]


def rewrite(text: str, rng: random.Random) -> str:
    """Keep most words, drop, swap or add a few: the rewrites in-depth evolution makes."""
    words = text.split()
    for _ in range(rng.randint(1, 8)):
        kind = rng.random()
        if kind < 0.4 and len(words) > 4:
            del words[rng.randrange(len(words))]
        elif kind < 0.7:
            words.insert(rng.randrange(len(words) + 1), rng.choice(words))
        else:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def scale(args: argparse.Namespace) -> None:
    sys.path.insert(0, args.repo)
    from evolab.embeddings.novelty import ROUGE_L_MAX, RougeIndex, max_rouge_l

    rng = random.Random(1)
    print(f"evolab at {args.repo}; 1,000 children (500 rewrites of pool members, 500 new) per pool; limit "
          f"ROUGE-L {ROUGE_L_MAX}\n")
    print("| pool | exact, per 1,000 children | LSH index build | LSH, per 1,000 children | children over 0.7 "
          "(exact) | same decision (of those timed exactly) | LSH candidates a child |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in [int(x) for x in args.pools.split(",")]:
        pool = synthetic_instructions(size, seed=size)
        children = [rewrite(pool[rng.randrange(size)], rng) for _ in range(500)]
        children += synthetic_instructions(500, seed=size + 1)
        rng.shuffle(children)
        t0 = time.perf_counter()
        index = RougeIndex(pool, exact=False)
        t1 = time.perf_counter()
        fast = [index.max_rouge_l(c) for c in children]
        t2 = time.perf_counter()
        sample = children[:min(args.exact_sample, len(children))] if size > 10_000 else children
        t3 = time.perf_counter()
        exact = [max_rouge_l(c, pool) for c in sample]
        t4 = time.perf_counter()
        same = sum((e > ROUGE_L_MAX) == (f > ROUGE_L_MAX) for e, f in zip(exact, fast))
        compared = sum(len(index.candidates(c)) for c in children[:100]) / min(100, len(children))
        over = sum(e > ROUGE_L_MAX for e in exact)
        per_exact = (t4 - t3) / len(sample) * 1000
        print(f"| {size:,} | {per_exact:,.1f} s{'' if len(sample) == len(children) else f' ({len(sample)} timed)'} | "
              f"{t1 - t0:.1f} s | {(t2 - t1):.1f} s | {over} of {len(sample)} | {same} of {len(sample)} | "
              f"{compared:,.0f} ({compared / size:.1%}) |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(HERE), help="the evolab checkout to measure")
    parser.add_argument("--seeds", default=str(HERE / "evolab" / "data" / "finance.jsonl"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", action="store_true", help="time --dedup's check at large pools, exact vs LSH")
    parser.add_argument("--pools", default="10000,100000")
    parser.add_argument("--exact-sample", type=int, default=100, help="children timed exactly above 10,000")
    args = parser.parse_args()
    if args.scale:
        return scale(args)
    sys.path.insert(0, args.repo)

    from evolab.llm import FakeBackend
    from evolab.schema import RunConfig
    from evolab.store import Store

    try:  # evolab in packages (this checkout)
        from evolab.engine import pipeline
        from evolab.seeds.files import load_seeds
    except ImportError:  # a checkout from before the move into packages (e.g. 92462f9)
        from evolab import pipeline
        from evolab.seeds import load_seeds
    try:  # the operation registry
        from evolab.engine.operations import in_depth_operations
        in_depth = tuple(in_depth_operations())
    except ImportError:  # before it: a constant in schema
        from evolab.schema import IN_DEPTH_OPERATIONS as in_depth

    seeds = load_seeds(args.seeds)
    rows = []
    for dedup in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "dedup.db")
            config = RunConfig(model="fake", base_url="http://fake", rounds=args.rounds, concurrency=16,
                               operation_weights={op: 1.0 for op in in_depth})
            config.rules.duplicate = dedup
            run_id = pipeline.create_run(store, seeds, config)
            pipeline.run_sync(store, run_id, backend=FakeBackend())
            children = [n for n in store.nodes(run_id) if n.round > 0]
            rules = Counter(n.rule for n in children if n.status != "kept")
            removed = rules.get("duplicate", 0)
            rows.append((dedup, len(children), sum(n.status == "kept" for n in children), removed))
            store.close()
    print(f"evolab at {args.repo}; {len(seeds)} seeds, {args.rounds} rounds, in-depth operations only, scripted model\n")
    print("| --dedup | in-depth children | kept | removed as duplicate | share removed |")
    print("|---|---:|---:|---:|---:|")
    for dedup, n, kept, removed in rows:
        print(f"| {'on' if dedup else 'off'} | {n} | {kept} | {removed} | {removed / n:.0%} |")


if __name__ == "__main__":
    main()
