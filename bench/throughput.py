"""Throughput of a run: N seeds x R rounds against a stub model with latency L at concurrency C.

Prints the wall time and its ratio to the ideal (total calls x mean latency / C). A run that keeps C
requests in flight from start to end lands near 1.0x; one that waits for the slowest call of each
batch lands far above it when latency is heavy-tailed (see --batched, a model of that design).

Transports:
  fake  the scripted model in-process, sleeping L per call: measures the engine's scheduling
        (lineages, store writes, cache) without HTTP costs. This is what the targets are about.
  http  the real openai client over HTTP to the stub server in a separate process: adds the client's
        and the server's CPU cost, which on a 2-core machine is itself a bottleneck at high C.
  bare  no evolab at all: a bare loop of the openai client replaying the requests evolab sends (recorded
        from a small run) to the same stub server at the same C, for the client's floor of CPU per call.

Every row also gives the client process's CPU time per call (and, over HTTP, the stub server's). The stub
answers with TCP_NODELAY; --stub-nagle leaves Nagle's algorithm on as the standard library does, which adds
about 40 ms (a delayed ACK) to every reply: the figures measured before that was found.

    python bench/throughput.py                       # 1000 seeds x 4 rounds, C=64, fixed and lognormal
    python bench/throughput.py --seeds 200 --transport http
    python bench/throughput.py --transport bare --kinds fixed
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

from evolab.engine.pipeline import create_run, run_sync  # noqa: E402
from evolab.llm import FakeBackend, OpenAICompatibleBackend  # noqa: E402
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


def _serve(port_queue, kind, median, sigma, nagle=False) -> None:  # runs in a child process
    from evolab.testing.stub_server import StubServer, _RequestHandler

    # The stub writes a reply's headers and body in two send()s. With Nagle's algorithm on (the standard
    # library's default) the body then waits for the client's delayed ACK of the headers: about 40 ms more
    # per reply, which no real endpoint adds. --stub-nagle keeps it (as the figures before it was found had).
    _RequestHandler.disable_nagle_algorithm = not nagle
    latency = RecordingLatency(kind, median, sigma)
    with StubServer(latency=latency) as stub:
        port_queue.put(stub.base_url)
        port_queue.get()  # wait for "start": the CPU before it (imports, start-up) is not the run's
        cpu0 = time.process_time()
        port_queue.get()  # wait for "stop"
        port_queue.put((latency.values, time.process_time() - cpu0))


class _StubProcess:
    """The stub server in a second process (so its CPU is not the client's)."""

    def __init__(self, kind: str, median: float, sigma: float, nagle: bool = False):
        ctx = mp.get_context("spawn")
        self.q = ctx.Queue()
        self.proc = ctx.Process(target=_serve, args=(self.q, kind, median, sigma, nagle), daemon=True)
        self.proc.start()
        self.base_url = self.q.get(timeout=60)

    def start(self) -> None:
        self.q.put("start")

    def stop(self) -> tuple[list[float], float]:
        """(the latencies it handed out, its CPU seconds since start())."""
        self.q.put("stop")
        latencies, cpu = self.q.get(timeout=60)
        self.proc.join(10)
        return latencies, cpu


def record_requests(n_seeds: int, rounds: int) -> list[tuple[dict, str]]:
    """The chat requests (body, purpose) a small evolab run sends over HTTP, for the bare replay."""
    from evolab.testing.stub_server import StubServer

    folder = tempfile.mkdtemp(prefix="evolab-bench-")
    store = Store(os.path.join(folder, "record.db"))
    cfg = RunConfig(model="bench-model", rounds=rounds, concurrency=16, random_seed=0, max_retries=2, timeout_s=60)
    run_id = create_run(store, make_seeds(n_seeds), cfg)
    os.environ["BENCH_KEY"] = "sk-bench"
    with StubServer() as stub:
        backend = OpenAICompatibleBackend(model="bench-model", base_url=stub.base_url, api_key_env="BENCH_KEY",
                                          timeout_s=60, max_retries=2)
        run_sync(store, run_id, backend=backend)
        return [(r["body"], r["purpose"]) for r in stub.chat_requests() if r["purpose"] != "probe"]


async def _bare_loop(base_url: str, requests: list[tuple[dict, str]], calls: int, concurrency: int) -> None:
    """`calls` requests through one AsyncOpenAI client, `concurrency` at a time, nothing else per call."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=2, timeout=60)
    it = iter(range(calls))

    async def worker() -> None:
        for i in it:
            body, purpose = requests[i % len(requests)]
            resp = await client.chat.completions.create(**body, extra_headers={"X-Evolab-Purpose": purpose})
            _ = resp.choices[0].message.content, resp.usage

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await client.close()


def run_bare(calls: int, concurrency: int, kind: str, median: float, sigma: float, nagle: bool = False,
             record_seeds: int = 100, rounds: int = 4) -> dict:
    requests = record_requests(record_seeds, rounds)
    stub = _StubProcess(kind, median, sigma, nagle)
    stub.start()
    cpu0, start = time.process_time(), time.perf_counter()
    asyncio.run(_bare_loop(stub.base_url, requests, calls, concurrency))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    latencies, server_cpu = stub.stop()
    ideal = calls * statistics.fmean(latencies) / concurrency
    return {"transport": "bare", "latency": kind, "seeds": "-", "rounds": "-", "C": concurrency, "calls": calls,
            "nodes": 0, "wall_s": wall, "ideal_s": ideal, "ratio": wall / ideal, "failed": 0,
            "cpu_ms_per_call": 1000 * cpu / calls, "server_cpu_ms_per_call": 1000 * server_cpu / calls}


def run_once(n_seeds: int, rounds: int, concurrency: int, kind: str, median: float, sigma: float,
             transport: str, nagle: bool = False) -> dict:
    folder = tempfile.mkdtemp(prefix="evolab-bench-")
    store = Store(os.path.join(folder, "bench.db"))
    cfg = RunConfig(model="bench-model", rounds=rounds, concurrency=concurrency, random_seed=0,
                    max_retries=2, timeout_s=60)
    run_id = create_run(store, make_seeds(n_seeds), cfg)
    server_cpu = None
    if transport == "fake":
        latency = RecordingLatency(kind, median, sigma)
        backend = FakeBackend(model="bench-model", latency=latency)
        cpu0, start = time.process_time(), time.perf_counter()
        run_sync(store, run_id, backend=backend)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        latencies = latency.values
    else:
        stub = _StubProcess(kind, median, sigma, nagle)
        os.environ["BENCH_KEY"] = "sk-bench"
        backend = OpenAICompatibleBackend(model="bench-model", base_url=stub.base_url, api_key_env="BENCH_KEY",
                                          timeout_s=60, max_retries=2, concurrency=concurrency)
        stub.start()
        cpu0, start = time.process_time(), time.perf_counter()
        run_sync(store, run_id, backend=backend)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        latencies, server_cpu = stub.stop()
    summary = store.run_summary(run_id)
    calls = summary["calls"] - summary["cached_calls"]
    ideal = calls * statistics.fmean(latencies) / concurrency
    return {"transport": transport, "latency": kind, "seeds": n_seeds, "rounds": rounds, "C": concurrency,
            "calls": calls, "nodes": summary["nodes"], "wall_s": wall, "ideal_s": ideal, "ratio": wall / ideal,
            "failed": summary["failed_calls"], "cpu_ms_per_call": 1000 * cpu / calls,
            "server_cpu_ms_per_call": None if server_cpu is None else 1000 * server_cpu / calls}


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
    p.add_argument("--transport", choices=["fake", "http", "bare"], default="fake")
    p.add_argument("--kinds", default="fixed,lognormal")
    p.add_argument("--calls", type=int, default=23000, help="bare: how many requests to send")
    p.add_argument("--stub-nagle", action="store_true",
                   help="http/bare: leave Nagle's algorithm on in the stub server (about 40 ms more per reply)")
    args = p.parse_args()
    rows = []
    for kind in args.kinds.split(","):
        if args.transport == "bare":
            r = run_bare(args.calls, args.concurrency, kind, args.latency, args.sigma, args.stub_nagle)
        else:
            r = run_once(args.seeds, args.rounds, args.concurrency, kind, args.latency, args.sigma, args.transport,
                         args.stub_nagle)
        r["batched_ratio"] = batched_model(r["calls"], args.concurrency, kind, args.latency, args.sigma)
        rows.append(r)
        server = r["server_cpu_ms_per_call"]
        print(f"{kind:9} {r['transport']:4} {r['seeds']} seeds x {r['rounds']} rounds, C={r['C']}: "
              f"{r['calls']} calls, {r['nodes']} nodes, wall {r['wall_s']:.1f} s, ideal {r['ideal_s']:.1f} s, "
              f"ratio {r['ratio']:.2f}x (a batch-and-wait design: {r['batched_ratio']:.1f}x); CPU per call: "
              f"client {r['cpu_ms_per_call']:.2f} ms" + (f", stub server {server:.2f} ms" if server else ""),
              flush=True)
    print("\n| latency | transport | seeds x rounds | C | calls | wall s | ideal s | ratio | batch-and-wait "
          "| client CPU ms/call |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['latency']} | {r['transport']} | {r['seeds']} x {r['rounds']} | {r['C']} | {r['calls']} | "
              f"{r['wall_s']:.1f} | {r['ideal_s']:.1f} | {r['ratio']:.2f}x | {r['batched_ratio']:.1f}x | "
              f"{r['cpu_ms_per_call']:.2f} |")


if __name__ == "__main__":
    main()
