"""Adaptive vs uniform operation sampling on a model whose operations succeed at different hidden rates.

    .venv/bin/python bench/adaptive.py [--seeds 40] [--rounds 4] [--runs 5] [--concurrency 8]

The model is `evolab.testing.op_rates_stub.OperationRates` behind the in-process FakeBackend (the same engine,
eliminator cascade, scorers and store as a real run; only the transport differs): with its operation's hidden
rate a step makes a kept child one difficulty point harder, otherwise it leaks the prompt, copies its parent or
rewords it (kept, not harder). Each random seed runs the same seeds (3 in 4 English, 1 in 4 Korean) three ways:
uniform sampling (the paper), adaptive (`--ops adaptive`), and, as the ceiling no one knows in advance, only the
best operation. Every run has a fresh store, so no call is a cache hit.

Per run: calls per kept child (every call of the run, seeds' answers and scores included, over the kept
children), kept share of the children tried, mean difficulty gain of the kept children over their parents,
the calls per kept child that is also harder than its parent, and the reward rate (kept and harder). The table gives mean ± sd over the random seeds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolab.engine import pipeline  # noqa: E402
from evolab.llm import FakeBackend  # noqa: E402
from evolab.schema import RunConfig, Seed  # noqa: E402
from evolab.store import Store  # noqa: E402
from evolab.testing.op_rates_stub import OperationRates  # noqa: E402

HIDDEN_RATES = {"constraints": 0.8, "deepen": 0.5, "concretize": 0.35, "reasoning": 0.3, "complicate_input": 0.2,
                "breadth": 0.1}
TOPICS = ["photosynthesis", "compound interest", "the French Revolution", "binary search", "plate tectonics",
          "supply and demand", "vaccines", "the water cycle", "recursion", "inflation"]
KO_TOPICS = ["광합성", "복리", "임진왜란", "이진 탐색", "판 구조론", "수요와 공급", "백신", "물의 순환", "재귀", "물가 상승"]


def make_seeds(n: int) -> list[Seed]:
    seeds = []
    for i in range(n):
        if i % 4 == 3:
            seeds.append(Seed(f"{KO_TOPICS[i % len(KO_TOPICS)]}에 대해 {i}번째 학생에게 쉽게 설명하세요."))
        else:
            seeds.append(Seed(f"Explain {TOPICS[i % len(TOPICS)]} to student number {i} in simple words."))
    return seeds


MODES = {
    "uniform": dict(operation_sampling="weights"),
    "adaptive": dict(operation_sampling="adaptive"),
    "best operation only": dict(operation_sampling="weights",
                                operation_weights={op: float(op == max(HIDDEN_RATES, key=HIDDEN_RATES.get))
                                                   for op in HIDDEN_RATES}),
}


def one_run(folder: Path, mode: str, seeds: list[Seed], random_seed: int, rounds: int, concurrency: int) -> dict:
    store = Store(folder / f"{mode.replace(' ', '_')}-{random_seed}.db")
    config = RunConfig(model="fake", base_url="http://stub.invalid/v1", rounds=rounds, concurrency=concurrency,
                       random_seed=random_seed, **MODES[mode])
    run_id = pipeline.create_run(store, seeds, config)
    backend = FakeBackend(handler=OperationRates(HIDDEN_RATES, seed=random_seed))
    started = time.perf_counter()
    assert pipeline.run_sync(store, run_id, backend=backend) == "finished"
    elapsed = time.perf_counter() - started
    nodes = {n.id: n for n in store.nodes(run_id)}
    difficulty = {s.node_id: s.value for s in store.scores(run_id) if s.metric == "difficulty" and s.value is not None}
    children = [n for n in nodes.values() if n.round > 0]
    kept = [n for n in children if n.status == "kept"]
    gains = [difficulty[n.id] - difficulty[n.parent_id] for n in kept if n.id in difficulty and n.parent_id in difficulty]
    summary = store.run_summary(run_id)
    store.close()
    harder = sum(g > 0 for g in gains)
    return {"calls_per_kept": summary["calls"] / len(kept) if kept else float("inf"),
            "calls_per_harder": summary["calls"] / harder if harder else float("inf"),
            "kept_share": len(kept) / len(children), "gain": statistics.fmean(gains) if gains else 0.0,
            "reward_rate": harder / len(children), "kept": len(kept), "calls": summary["calls"],
            "cached": summary["cached_calls"], "seconds": elapsed}


def mean_sd(values: list[float], digits: int) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5, help="random seeds 1..N")
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    seeds = make_seeds(args.seeds)
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for random_seed in range(1, args.runs + 1):
            for mode in MODES:
                r = one_run(Path(tmp), mode, seeds, random_seed, args.rounds, args.concurrency)
                results[mode].append(r)
                print(f"seed {random_seed} {mode:20} calls/kept {r['calls_per_kept']:.2f}  kept {r['kept']}  "
                      f"calls {r['calls']} (cached {r['cached']})  {r['seconds']:.1f} s", file=sys.stderr)
    print(f"\n{args.seeds} seeds x {args.rounds} rounds, concurrency {args.concurrency}, random seeds 1-{args.runs}; "
          f"hidden rates {HIDDEN_RATES}\n")
    print("| sampling | calls per kept child | calls per kept and harder child | kept share | "
          "difficulty gain of kept | reward rate (kept and harder) |")
    print("|---|---|---|---|---|---|")
    for mode, rs in results.items():
        print(f"| {mode} | {mean_sd([r['calls_per_kept'] for r in rs], 2)} | "
              f"{mean_sd([r['calls_per_harder'] for r in rs], 2)} | "
              f"{mean_sd([r['kept_share'] for r in rs], 3)} | {mean_sd([r['gain'] for r in rs], 2)} | "
              f"{mean_sd([r['reward_rate'] for r in rs], 3)} |")


if __name__ == "__main__":
    main()
