"""Ray Data LLM on one machine: a stage of requests online vs `--batch ray` with 1 and 2 workers, and the
embedding of a run's instructions in one process vs on Ray with 2 actors.

    .venv/bin/python bench/ray.py --requests 10000 --latency 0.2          # the stage
    .venv/bin/python bench/ray.py --embed 10000                           # the embedding

The stage: `--requests` chat requests (a respond stage's bodies) to the stub in its own process, answering each
after `--latency` seconds. Online goes through the run's client (evolab/llm/client.py, `--concurrency` in
flight); Ray through the transport `--batch ray` uses (evolab/engine/raybatch.py: the job's input file, the
Dataset, its block files, the import's reader). Each mode runs in a fresh child process that reports its own
CPU time (the driver's: Ray's workers are other processes) and wall time; `requests per worker` counts the
answers each Ray worker process sent.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This file is named ray.py: its folder must not shadow the ray package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

STUB_CODE = """
import sys
from evolab.testing.stub_server import StubServer
s = StubServer(latency=float(sys.argv[1])).start()
print(s.base_url, flush=True)
sys.stdin.read()
"""


def ray_temp() -> str:
    """The child's local Ray keeps its session files here, removed when the child exits (not left in /tmp/ray)."""
    import atexit
    import shutil

    import ray

    temp = tempfile.mkdtemp(prefix="evray-", dir="/tmp")
    atexit.register(lambda: (ray.shutdown(), shutil.rmtree(temp, ignore_errors=True)))
    return temp


def bodies(n: int) -> list[dict]:
    topics = ["the sea", "a bicycle", "taxes", "photosynthesis", "a job interview", "바다", "자전거", "세금"]
    return [{"model": "gpt-4o-mini", "max_tokens": 256, "temperature": 0.7, "messages": [
        {"role": "user", "content": f"Explain {topics[i % len(topics)]} to a beginner, case {i}."}]}
        for i in range(n)]


def stage_child(mode: str, base_url: str, n: int, concurrency: int, db: str) -> dict:
    from evolab.llm.client import LLMClient
    from evolab.llm.openai_backend import OpenAICompatibleBackend
    from evolab.schema import RunConfig
    from evolab.store import Store

    store = Store(db)
    config = RunConfig(model="gpt-4o-mini", base_url=base_url, rounds=1, concurrency=concurrency)
    run_id = store.create_run(config, [], run_id="bench")
    reqs = bodies(n)
    result: dict = {"mode": mode, "requests": n}
    if mode == "online":
        async def go() -> None:
            backend = OpenAICompatibleBackend(model="gpt-4o-mini", base_url=base_url)
            client = LLMClient(backend, store, run_id=run_id, concurrency=concurrency, use_cache=False)
            await asyncio.gather(*(client.complete(b["messages"], purpose="respond", temperature=0.7,
                                                   max_tokens=256) for b in reqs))
            await backend.aclose()

        t0, c0 = time.perf_counter(), time.process_time()
        asyncio.run(go())
        store.flush()
    else:
        from evolab.engine.batch import read_results
        from evolab.engine.raybatch import RayBatches, RayOptions
        from evolab.llm.raycluster import connect

        workers = int(mode.split("-")[1])
        connect(num_cpus=os.cpu_count(), temp_dir=ray_temp())  # its start-up is not the stage's (a cluster is up)
        transport = RayBatches(store, run_id, config, RayOptions(workers=workers, block_rows=64, batch_rows=16))
        data = "".join(json.dumps({"custom_id": f"respond:{i}", "method": "POST", "url": "/v1/chat/completions",
                                   "body": b}, ensure_ascii=False) + "\n" for i, b in enumerate(reqs)).encode()
        t0, c0 = time.perf_counter(), time.process_time()
        job = transport.create(transport.upload(data))["id"]
        while (info := transport.retrieve(job))["status"] == "in_progress":
            time.sleep(0.2)
        answered, failed = read_results(transport.content(job))
        result.update(status=info["status"], answered=len(answered), failed=len(failed),
                      per_worker=sorted(transport.per_worker.values()))
    result.update(wall_s=time.perf_counter() - t0, driver_cpu_s=time.process_time() - c0)
    return result


def embed_child(mode: str, n: int, db: str) -> dict:
    from evolab.embeddings import embed
    from evolab.embeddings.raymap import RayEmbedder
    from evolab.store import Store

    texts = [f"Explain topic number {i} to a beginner, with one example about {('tax', 'sea', 'bike')[i % 3]}."
             for i in range(n)]
    inner = embed.minilm_embedder()
    embedder = inner
    if mode != "one process":
        from evolab.llm.raycluster import connect

        connect(num_cpus=os.cpu_count(), temp_dir=ray_temp())
        embedder = RayEmbedder(inner, actors=2, batch_rows=256)
    else:
        inner.model  # the model's load is not the embedding's (a Ray actor loads it before its first batch too)
    t0, c0 = time.perf_counter(), time.process_time()
    embed.embed_texts(texts, embedder, Store(db))
    return {"mode": mode, "texts": n, "wall_s": time.perf_counter() - t0, "driver_cpu_s": time.process_time() - c0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=64, help="online: calls in flight (default 64)")
    ap.add_argument("--modes", default="online,ray-1,ray-2")
    ap.add_argument("--embed", type=int, default=0, help="texts to embed (one process vs Ray with 2 actors)")
    ap.add_argument("--child")
    ap.add_argument("--base-url")
    ap.add_argument("--db")
    args = ap.parse_args()
    if args.child:
        if args.child.startswith("embed:"):
            out = embed_child(args.child[6:], args.embed, args.db)
        else:
            out = stage_child(args.child, args.base_url, args.requests, args.concurrency, args.db)
        print(json.dumps(out))
        return

    def child(mode: str, extra: list[str], tmp: str) -> dict:
        r = subprocess.run([sys.executable, __file__, "--child", mode, *extra, "--db",
                            os.path.join(tmp, f"{mode.replace(' ', '_').replace(':', '_')}.db")],
                           cwd=ROOT, capture_output=True, text=True, env={**os.environ, "EVOLAB_WARM": "0"})
        if r.returncode != 0:
            raise SystemExit(r.stderr[-3000:])
        return json.loads(r.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as tmp:
        if args.requests:
            stub = subprocess.Popen([sys.executable, "-c", STUB_CODE, str(args.latency)], cwd=ROOT,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            base_url = stub.stdout.readline().strip()
            try:
                rows = [child(m, ["--base-url", base_url, "--requests", str(args.requests), "--concurrency",
                                  str(args.concurrency)], tmp) for m in args.modes.split(",")]
            finally:
                stub.stdin.close()
                stub.wait(timeout=30)
            print(f"{args.requests:,} requests, stub latency {args.latency} s, online at {args.concurrency} in flight")
            print(f"{'mode':8}{'wall s':>9}{'req/s':>8}{'driver CPU s':>14}{'CPU ms/request':>16}  requests per worker")
            for r in rows:
                print(f"{r['mode']:8}{r['wall_s']:>9.1f}{r['requests'] / r['wall_s']:>8.0f}{r['driver_cpu_s']:>14.2f}"
                      f"{r['driver_cpu_s'] / r['requests'] * 1000:>16.3f}  {r.get('per_worker', '-')}"
                      + (f" ({r['failed']} failed)" if r.get("failed") else ""))
        if args.embed:
            rows = [child(f"embed:{m}", ["--embed", str(args.embed)], tmp) for m in ("one process", "ray 2 actors")]
            print(f"{args.embed:,} instructions embedded with all-MiniLM-L6-v2 (one process: the model is loaded before "
                  "the clock starts; Ray: each actor loads it inside the timed part)")
            for r in rows:
                print(f"{r['mode']:14}{r['wall_s']:>9.1f} s{r['texts'] / r['wall_s']:>8.0f}/s  driver CPU "
                      f"{r['driver_cpu_s']:.1f} s")


if __name__ == "__main__":
    main()
