"""Throughput of a run: N seeds x R rounds against a stub model with latency L at concurrency C.

Prints the wall time and its ratio to the ideal (total calls x mean latency / C). A run that keeps C
requests in flight from start to end lands near 1.0x; one that waits for the slowest call of each
batch lands far above it when latency is heavy-tailed (see --batched, a model of that design).

Transports:
  fake  the scripted model in-process, sleeping L per call: measures the engine's scheduling
        (lineages, store writes, cache) without HTTP costs. This is what the targets are about.
  http  the real openai client over HTTP to the stub server in a separate process: adds the client's
        and the server's CPU cost, which on a 2-core machine is itself a bottleneck at high C.

    python bench/throughput.py                       # 1000 seeds x 4 rounds, C=64, fixed and lognormal
    python bench/throughput.py --seeds 200 --transport http
"""
from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolab.llm import FakeBackend, OpenAICompatibleBackend  # noqa: E402
from evolab.pipeline import create_run, run_sync  # noqa: E402
from evolab.schema import RunConfig, Seed  # noqa: E402
from evolab.store import Store  # noqa: E402

TOPICS = ["tax", "bonds", "poetry", "sorting", "photosynthesis", "the Roman empire", "budgets", "SQL joins",
          "climate", "probability", "negotiation", "Korean grammar", "compilers", "nutrition", "chess"]
VERBS = ["Explain", "Summarise", "Compare two views on", "Write a short guide to", "List common mistakes in",
         "Give an example of", "Teach a beginner"]


def make_seeds(n: int) -> list[Seed]:
    rng = random.Random(1)
    return [Seed(f"{rng.choice(VERBS)} {rng.choice(TOPICS)} (case {i}).") for i in range(n)]


class RecordingLatency:
    """Latency source that remembers every value it handed out, for the ideal time."""

    def __init__(self, kind: str, median: float, sigma: float, seed: int = 0):
        self.kind, self.median, self.sigma = kind, median, sigma
        self.rng = random.Random(seed)
        self.values: list[float] = []

    def __call__(self) -> float:
        v = self.median if self.kind == "fixed" else self.rng.lognormvariate(math.log(self.median), self.sigma)
        self.values.append(v)
        return v


def _serve(port_queue, kind, median, sigma) -> None:  # runs in a child process
    from evolab.llm.stub_server import StubServer

    latency = RecordingLatency(kind, median, sigma)
    with StubServer(latency=latency) as stub:
        port_queue.put(stub.base_url)
        port_queue.get()  # wait for "stop"
        port_queue.put(latency.values)


def run_once(n_seeds: int, rounds: int, concurrency: int, kind: str, median: float, sigma: float,
             transport: str) -> dict:
    folder = tempfile.mkdtemp(prefix="evolab-bench-")
    store = Store(os.path.join(folder, "bench.db"))
    cfg = RunConfig(model="bench-model", rounds=rounds, concurrency=concurrency, random_seed=0,
                    max_retries=2, timeout_s=60)
    run_id = create_run(store, make_seeds(n_seeds), cfg)
    if transport == "fake":
        latency = RecordingLatency(kind, median, sigma)
        backend = FakeBackend(model="bench-model", latency=latency)
        start = time.perf_counter()
        run_sync(store, run_id, backend=backend)
        wall = time.perf_counter() - start
        latencies = latency.values
    else:
        q = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(target=_serve, args=(q, kind, median, sigma), daemon=True)
        proc.start()
        base_url = q.get(timeout=60)
        os.environ["BENCH_KEY"] = "sk-bench"
        backend = OpenAICompatibleBackend(model="bench-model", base_url=base_url, api_key_env="BENCH_KEY",
                                          timeout_s=60, max_retries=2)
        start = time.perf_counter()
        run_sync(store, run_id, backend=backend)
        wall = time.perf_counter() - start
        q.put("stop")
        latencies = q.get(timeout=60)
        proc.join(10)
    summary = store.run_summary(run_id)
    calls = summary["calls"] - summary["cached_calls"]
    ideal = calls * statistics.fmean(latencies) / concurrency
    return {"transport": transport, "latency": kind, "seeds": n_seeds, "rounds": rounds, "C": concurrency,
            "calls": calls, "nodes": summary["nodes"], "wall_s": wall, "ideal_s": ideal, "ratio": wall / ideal,
            "failed": summary["failed_calls"]}


def batched_model(calls: int, concurrency: int, kind: str, median: float, sigma: float) -> float:
    """Ratio to ideal of a design that sends C calls and waits for the slowest before the next batch
    (computed from the same latency distribution, no run needed)."""
    lat = RecordingLatency(kind, median, sigma, seed=7)
    values = [lat() for _ in range(calls)]
    wall = sum(max(values[i:i + concurrency]) for i in range(0, calls, concurrency))
    return wall / (calls * statistics.fmean(values) / concurrency)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--latency", type=float, default=0.2, help="fixed latency / lognormal median, seconds")
    p.add_argument("--sigma", type=float, default=1.0, help="lognormal sigma")
    p.add_argument("--transport", choices=["fake", "http"], default="fake")
    p.add_argument("--kinds", default="fixed,lognormal")
    args = p.parse_args()
    rows = []
    for kind in args.kinds.split(","):
        r = run_once(args.seeds, args.rounds, args.concurrency, kind, args.latency, args.sigma, args.transport)
        r["batched_ratio"] = batched_model(r["calls"], args.concurrency, kind, args.latency, args.sigma)
        rows.append(r)
        print(f"{kind:9} {r['transport']:4} {r['seeds']} seeds x {r['rounds']} rounds, C={r['C']}: "
              f"{r['calls']} calls, {r['nodes']} nodes, wall {r['wall_s']:.1f} s, ideal {r['ideal_s']:.1f} s, "
              f"ratio {r['ratio']:.2f}x (a batch-and-wait design: {r['batched_ratio']:.1f}x)", flush=True)
    print("\n| latency | transport | seeds x rounds | C | calls | wall s | ideal s | ratio | batch-and-wait |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['latency']} | {r['transport']} | {r['seeds']} x {r['rounds']} | {r['C']} | {r['calls']} | "
              f"{r['wall_s']:.1f} | {r['ideal_s']:.1f} | {r['ratio']:.2f}x | {r['batched_ratio']:.1f}x |")


if __name__ == "__main__":
    main()
