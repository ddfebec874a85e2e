"""Client CPU and memory per 1,000 requests: a run through the stub's batch endpoints vs the online path.

    .venv/bin/python bench/batch.py --seeds 1000 --rounds 2

The stub runs in its own process (its CPU is not the client's). Each mode runs in a fresh child process that
reports its own process time (user + system CPU, time.process_time) and peak RSS (ru_maxrss); requests are the
run's calls that reached the endpoint (not cached, no probe).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STUB_CODE = """
import sys, threading
from evolab.testing.stub_server import StubServer
s = StubServer().start()
s.batch_timing = {"validating": 0.0, "per_line": 0.0, "finalizing": 0.0}
print(s.base_url, flush=True)
sys.stdin.read()
"""


def seeds(n: int):
    from evolab.schema import Seed

    topics = ["the sea", "a bicycle", "taxes", "photosynthesis", "a job interview", "바다", "자전거", "세금"]
    return [Seed(f"Explain {topics[i % len(topics)]} to a beginner, case {i}." if i % 8 < 5 else
                 f"{topics[i % len(topics)]}에 대해 초보자에게 설명하세요. 사례 {i}.") for i in range(n)]


def child(mode: str, base_url: str, n_seeds: int, rounds: int, db: str) -> None:
    from evolab.engine import batch, pipeline
    from evolab.schema import RunConfig
    from evolab.store import Store

    store = Store(db)
    config = RunConfig(model="gpt-4o-mini", base_url=base_url, rounds=rounds, concurrency=64)
    run_id = store.create_run(config, seeds(n_seeds), run_id="bench")
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "online":
        status = pipeline.run_sync(store, run_id)
    else:
        status = batch.run_batched(store, run_id, options=batch.BatchOptions(
            poll=batch.PollPolicy(first_s=0.05, max_s=0.5)))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    calls = [c for c in store.calls(run_id) if not c.cached and c.purpose != "probe"]
    jobs = len(store.batches(run_id))
    print(json.dumps({"mode": mode, "status": status, "requests": len(calls), "cpu_s": cpu, "wall_s": wall,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "jobs": jobs,
                      "nodes": len(store.nodes(run_id))}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default="online,batch", help="which modes to run (batch alone for a large run)")
    ap.add_argument("--child", choices=["online", "batch"])
    ap.add_argument("--base-url")
    ap.add_argument("--db")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.base_url, args.seeds, args.rounds, args.db)
        return
    stub = subprocess.Popen([sys.executable, "-c", STUB_CODE], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    base_url = stub.stdout.readline().strip()
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode in args.modes.split(","):
                out = subprocess.run([sys.executable, __file__, "--child", mode, "--base-url", base_url,
                                      "--seeds", str(args.seeds), "--rounds", str(args.rounds),
                                      "--db", os.path.join(tmp, f"{mode}.db")],
                                     cwd=ROOT, capture_output=True, text=True, env={**os.environ, "EVOLAB_WARM": "0"})
                if out.returncode != 0:
                    raise SystemExit(out.stderr[-3000:])
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        stub.stdin.close()
        stub.wait(timeout=30)
    print(f"{args.seeds} seeds x {args.rounds} rounds, model gpt-4o-mini on the stub (its own process)")
    print(f"{'mode':8}{'requests':>10}{'jobs':>6}{'client CPU s':>14}{'CPU ms/request':>16}{'per 1k req s':>14}"
          f"{'peak RSS MB':>13}{'wall s':>9}")
    for r in results:
        per = r["cpu_s"] / max(1, r["requests"])
        print(f"{r['mode']:8}{r['requests']:>10,}{r['jobs']:>6}{r['cpu_s']:>14.2f}{per * 1000:>16.3f}"
              f"{per * 1000:>14.2f}{r['peak_rss_mb']:>13.0f}{r['wall_s']:>9.1f}")
    by_mode = {r["mode"]: r for r in results}
    if {"online", "batch"} <= set(by_mode):
        online, batched = by_mode["online"], by_mode["batch"]
        ratio = (online["cpu_s"] / online["requests"]) / (batched["cpu_s"] / batched["requests"])
        print(f"client CPU per request: online / batch = {ratio:.2f}x")


if __name__ == "__main__":
    main()
