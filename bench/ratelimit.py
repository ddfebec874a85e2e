"""Rate limits: evolab's client at concurrency 64 against stub servers that limit it the ways real ones do, each
run with the current limiter ("now") and with the one it replaced ("before", bench/old_ratelimit.py, a copy of
evolab/llm/ratelimit.py before issue 24), side by side.

Scenarios (names for --scenarios):
  quantized            OpenAI-style x-ratelimit-* headers announcing RPM a minute, enforced over short fixed windows of
                       --quantum seconds (RPM/60 * quantum each), 429 with Retry-After to the window's end
  quantized-bare       the same, its 429s without Retry-After
  cap                  a self-hosted server serving --cap requests at once, 503 at once past that, no headers
  cap-retry-after      the same with `Retry-After: 1` on its 503s
  cap-queue            serves --cap at once, lets --cap more wait for a slot (it slows down), 503 past that
  window-headers       the older scenarios: RPM in fixed --window second windows, with x-ratelimit-* headers,
  window-429           ... with only a 429 and Retry-After,
  window-bare          ... with only a 429

Capacity is what the server could have done over the run's wall time: for the rate limits, a full quota in every
window the run touched; for the concurrency caps, --cap requests every --latency seconds. "used" is requests
answered 200 against it, "refused" the share of requests the stub answered 429/503 (retries included). Goal: at
least 90 % used, at most 2 % refused. Prints a markdown table.

    python bench/ratelimit.py                      # quantized, cap, cap-queue: 800 calls each, both limiters
    python bench/ratelimit.py --scenarios cap,cap-queue --cap 40
    python bench/ratelimit.py --scenarios quantized --quantized-rpm 1200 --quantum 10
    python bench/ratelimit.py --scenarios all --requests 2000
    python bench/ratelimit.py --scenarios cap --limiters now --starve-client 4/20   # the client as on a busy machine

The caps' "server side" column is the stub's own count: the share of its slot-seconds that held a call, and how long
a call held one (its reply time plus its own overhead); the load average is the machine's over each run.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import old_ratelimit  # noqa: E402

from evolab.llm import LLMError, OpenAICompatibleBackend  # noqa: E402
from evolab.llm.client import LLMClient  # noqa: E402
from evolab.llm.ratelimit import describe_settled  # noqa: E402

SCENARIOS = ["quantized", "quantized-bare", "cap", "cap-retry-after", "cap-queue", "window-headers", "window-429",
             "window-bare"]


class BeforeLimiter(old_ratelimit.RateLimiter):
    """The limiter before issue 24, behind the client's current calls."""

    async def acquire(self, tokens: int = 0, retry_of=None):
        return await super().acquire(tokens)


def stub_kwargs(name: str, args: argparse.Namespace) -> dict:
    if name.startswith("quantized"):
        return dict(latency=args.latency, rpm=args.quantized_rpm, window_s=60.0, quantum_s=args.quantum,
                    ratelimit_headers=True,
                    ratelimit_retry_after=name == "quantized")
    if name.startswith("cap"):
        return dict(latency=args.cap_latency, max_concurrent=args.cap, queue=args.cap if name == "cap-queue" else 0,
                    busy_retry_after=1.0 if name == "cap-retry-after" else None)
    return dict(latency=args.latency, rpm=args.rpm, window_s=args.window, ratelimit_headers=name == "window-headers",
                ratelimit_retry_after=name != "window-bare")


def _serve(queue, kwargs: dict, nice: int) -> None:
    """The stub in its own process (as bench/throughput.py does), so it does not share the client's CPU."""
    from evolab.testing.stub_server import StubServer

    if nice:
        os.nice(nice)
    with StubServer(**kwargs) as stub:
        queue.put(stub.base_url)
        queue.get()  # "stop"
        offset = time.time() - time.monotonic()  # the stub's windows count from stub._t0 (monotonic)
        queue.put([(r["time"] - offset - stub._t0, r["status"], r.get("served")) for r in stub.chat_requests()])


def _starve(pid: int, run_ms: float, period_ms: float, stop) -> None:
    """A busy machine's scheduler, for the client only: let it run `run_ms` out of about every `period_ms` (SIGSTOP,
    SIGCONT; the pauses vary from half to one and a half times their mean). Replies then wait to be read."""
    import random
    import signal

    rng = random.Random(0)
    try:
        while True:
            os.kill(pid, signal.SIGCONT)
            time.sleep(run_ms / 1000)
            if stop.is_set():  # looked at before each pause, so the client is never left stopped
                break
            os.kill(pid, signal.SIGSTOP)
            time.sleep(max(0.0, (period_ms - run_ms) / 1000 * rng.uniform(0.5, 1.5)))
    finally:
        os.kill(pid, signal.SIGCONT)


async def _calls(client: LLMClient, n: int) -> tuple[int, int]:
    async def one(i: int) -> bool:
        try:
            await client.complete([{"role": "user", "content": f"Name a prime number ({i})."}],
                                  purpose="respond", max_tokens=16)
            return True
        except LLMError:
            return False
    try:
        ok = sum(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await client.aclose()
    return ok, n - ok


def run_one(name: str, limiter: str, args: argparse.Namespace) -> dict:
    kwargs = stub_kwargs(name, args)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(queue, kwargs, args.stub_nice), daemon=True)
    proc.start()
    base_url = queue.get(timeout=60)
    backend = OpenAICompatibleBackend(model="bench-model", base_url=base_url, timeout_s=60, max_retries=12,
                                      concurrency=args.concurrency)
    client = LLMClient(backend, None, concurrency=args.concurrency)
    if limiter == "before":
        client.limiter = BeforeLimiter(args.concurrency)
        backend.rate_limiter = client.limiter
    load_before = os.getloadavg()[0]
    starver = None
    if args.starve_client:
        run_ms, period_ms = (float(x) for x in args.starve_client.split("/"))
        stop_starving = ctx.Event()
        starver = ctx.Process(target=_starve, args=(os.getpid(), run_ms, period_ms, stop_starving), daemon=True)
        starver.start()
    cpu = time.process_time()
    start = time.perf_counter()
    try:
        ok, failed = asyncio.run(_calls(client, args.requests))
    finally:
        if starver is not None:
            stop_starving.set()
            starver.join()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu  # the client's own CPU (the stub's is in its process)
    load = (load_before + os.getloadavg()[0]) / 2
    queue.put("stop")
    requests = queue.get(timeout=60)
    proc.join(10)
    statuses = [s for _, s, _ in requests]
    answered = statuses.count(200)
    if name.startswith("cap"):
        capacity = args.cap / args.cap_latency * wall
    else:
        span = args.quantum if name.startswith("quantized") else args.window
        windows = {int(t // span) for t, _, _ in requests}
        rpm = args.quantized_rpm if name.startswith("quantized") else args.rpm
        capacity = int(rpm * span / 60) * (max(windows) - min(windows) + 1)
    refused = sum(s in (429, 503) for s in statuses)
    # The server's side, for the caps: the share of its slot-seconds that held a call, and how long a call held one
    # (the stub's 500 ms plus its own overhead). What a limiter can fill is the first; the machine sets the second.
    served = [b - a for _, s, sv in requests if s == 200 and sv for a, b in [sv]]
    busy = sum(served) / (args.cap * wall) if name.startswith("cap") else None
    state = client.limiter.state()
    return {"scenario": name, "limiter": limiter, "used": answered / capacity, "refused": refused / max(1, len(statuses)),
            "n_refused": refused, "requests": len(statuses), "failed": failed, "wall": wall,
            "concurrency": state["concurrency"], "settled": describe_settled(state), "busy": busy,
            "served_s": sum(served) / max(1, len(served)), "load": load,
            "cpu_ms": cpu * 1000 / max(1, len(statuses))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=800, help="calls per run (default 800)")
    p.add_argument("--scenarios", default="quantized,cap,cap-queue",
                   help=f"comma-separated, from {', '.join(SCENARIOS)}, or all (default quantized,cap,cap-queue)")
    p.add_argument("--limiters", default="now,before", help="now, before or both (default now,before)")
    p.add_argument("--quantized-rpm", type=float, default=600,
                   help="requests a minute the quantized stubs announce (default 600, the issue's)")
    p.add_argument("--rpm", type=float, default=6000, help="requests a minute the window-* stubs allow (default 6000)")
    p.add_argument("--quantum", type=float, default=1.0, help="the quantized scenarios' enforcement window, s (default 1)")
    p.add_argument("--window", type=float, default=4.0, help="the window-* scenarios' window, s (default 4)")
    p.add_argument("--cap", type=int, default=16, help="the cap-* scenarios' requests at once (default 16)")
    p.add_argument("--latency", type=float, default=0.2, help="the rate-limited stubs' reply time, s (default 0.2)")
    p.add_argument("--cap-latency", type=float, default=0.5,
                   help="the cap-* stubs' reply time, s (default 0.5: 32 a second at a cap of 16, which one client "
                        "process keeps up with on a busy 2-core machine)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--stub-nice", type=int, default=0,
                   help="run the stub at this niceness (19: the client gets the CPU first on a busy machine)")
    p.add_argument("--client-nice", type=int, default=0,
                   help="renice this process, the client (negative needs root: it then goes before other jobs)")
    p.add_argument("--starve-client", metavar="RUN_MS/PERIOD_MS", default="",
                   help="let the client run only RUN_MS of about every PERIOD_MS (SIGSTOP/SIGCONT from a helper "
                        "process), as a busy machine's scheduler would: replies wait to be read. E.g. 4/20")
    args = p.parse_args()
    if args.starve_client and not re.fullmatch(r"\d+(\.\d+)?/\d+(\.\d+)?", args.starve_client):
        p.error("--starve-client takes RUN_MS/PERIOD_MS, e.g. 4/20")
    if args.client_nice:
        os.nice(args.client_nice)
    names = SCENARIOS if args.scenarios == "all" else args.scenarios.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    print(f"{args.requests} calls a run, concurrency {args.concurrency}; quantized: {args.quantized_rpm:g}/min in "
          f"{args.quantum:g} s windows; cap {args.cap} at {args.cap_latency * 1000:g} ms a reply; window-*: {args.rpm:g}/min "
          f"in {args.window:g} s windows", file=sys.stderr)
    rows = []
    for name in names:
        for limiter in args.limiters.split(","):
            r = run_one(name, limiter, args)
            rows.append(r)
            print(f"  {name} / {limiter}: used {r['used']:.0%}, refused {r['n_refused']}/{r['requests']}, failed "
                  f"{r['failed']}, {r['wall']:.1f} s, {_server_side(r)}, client CPU {r['cpu_ms']:.1f} ms a request, load {r['load']:.1f}, concurrency "
                  f"{r['concurrency']} {r['settled']}", file=sys.stderr)
    print()
    print("| scenario | limiter | capacity used | refused | calls failed | wall s | server side | load | settled |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scenario']} | {r['limiter']} | {r['used']:.0%} | {r['refused']:.1%} ({r['n_refused']} of "
              f"{r['requests']}) | {r['failed']} | {r['wall']:.1f} | {_server_side(r)} | {r['load']:.1f} | "
              f"{r['settled'] or r['concurrency']} |")


def _server_side(r: dict) -> str:
    """The caps: slots busy (a call held them) over the run, and a call's mean time in a slot."""
    return "" if r["busy"] is None else f"{r['busy']:.0%} busy, {r['served_s'] * 1000:.0f} ms a call"


if __name__ == "__main__":
    main()
