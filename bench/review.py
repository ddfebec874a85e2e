"""How long the Review page's work takes on big runs, over a run written straight to the store with the verdict
rows a real run stores (up to eight rule verdicts, difficulty, quality and three complexity scores per evolved
node) and 200 reviews: reading the rows the queue needs (`review_frames`; the page caches it until the run
changes), the queue, the agreement table; a first open does all three, a click (Keep, Discard, Skip) the last two.
Best of 3, on the machine as it is (shared, so read the numbers as an order of magnitude).

    .venv/bin/python bench/review.py --nodes 1000 10000
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolab.audit import review  # noqa: E402
from evolab.schema import Node, RunConfig, Score, Seed  # noqa: E402
from evolab.store import Store  # noqa: E402

RULES = ["truncated", "no_new_information", "prompt_leak", "refusal", "empty_response", "duplicate", "low_quality"]


def build(store: Store, n_nodes: int) -> str:
    rng = random.Random(0)
    run_id = store.create_run(RunConfig(model="m", rounds=5), [Seed("s")], name=f"review-{n_nodes}")
    nodes, scores = [], []
    seeds = max(1, n_nodes // 10)
    for i in range(n_nodes):
        if i < seeds:
            nodes.append(Node(id=f"n{i}", run_id=run_id, parent_id=None, root_id=f"n{i}", round=0, operation="seed",
                              instruction=f"seed {i}", status="seed", response="a"))
            continue
        parent = f"n{i % seeds}"
        verdicts = []
        failed_at = rng.randrange(len(RULES) + 4)  # most nodes pass everything
        for j, rule in enumerate(RULES):
            value = 0.0 if j == failed_at else 1.0
            verdicts.append(Score(f"n{i}", f"rule:{rule}", value, "heuristic", "detail"))
            if rule == "no_new_information":
                verdicts.append(Score(f"n{i}", "rule:no_new_information", None if rng.random() < 0.02 else 1.0,
                                      "m", "judge"))
            if value == 0.0:
                break
        failed = failed_at < len(RULES)
        nodes.append(Node(id=f"n{i}", run_id=run_id, parent_id=parent, root_id=parent, round=1 + i % 5,
                          operation="deepen", instruction=f"instruction {i}", response="answer",
                          status="eliminated" if failed else "kept", rule=RULES[failed_at] if failed else None))
        scores += verdicts + [Score(f"n{i}", "quality", rng.choice([3.0, 3.5, 4.0, 4.5, 5.0]), "m", "[json]"),
                              Score(f"n{i}", "difficulty", float(rng.randint(1, 10)), "m", "[json]")]
        scores += [Score(f"n{i}", f"cx_{k}", rng.random(), "heuristic") for k in ("index", "tokens", "steps")]
    store.save_nodes(nodes)
    store.add_scores(scores)
    queue = review.review_queue(store, [run_id], margin=0.5, audit_size=20, thresholds={"quality": 4.5})
    for row in queue.head(200).to_dict("records"):
        review.record_review(store, row["node_id"], rng.choice(["keep", "discard"]), reasons=row["reasons"])
    return run_id


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="+", default=[1000, 10000])
    args = ap.parse_args()
    print("| evolved nodes | score rows read | read the store (s) | queue (s) | agreement (s) | first open (s) "
          "| a click (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    args_q = dict(margin=0.5, audit_size=20, thresholds={"quality": 4.5}, include_reviewed=True)
    for n in args.nodes:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "bench.db")
            run_id = build(store, n)
            nodes, scores = review.review_frames(store, [run_id])
            read = timed(lambda: review.review_frames(store, [run_id]))

            def click() -> None:
                reviews = store.reviews([run_id])
                review.select_queue(nodes, scores, reviews, **args_q)
                review.agreement_of(nodes, scores, reviews)

            q = timed(lambda: review.select_queue(nodes, scores, store.reviews([run_id]), **args_q))
            a = timed(lambda: review.agreement_of(nodes, scores, store.reviews([run_id])))
            c = timed(click)
            print(f"| {len(nodes):,} | {len(scores):,} | {read:.2f} | {q:.2f} | {a:.2f} | {read + c:.2f} | {c:.2f} |")
            store.close()

if __name__ == "__main__":
    main()
