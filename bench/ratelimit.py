"""Rate limits: evolab's client at concurrency 64 against a stub that allows a number of requests a minute,
enforced over short fixed windows, with OpenAI's x-ratelimit-* headers and without them (a self-hosted
server that only answers 429, with or without Retry-After). For comparison, the old behaviour: a fixed
concurrency of 64 with the openai client's own retries (`adaptive=False`).

Prints a markdown table: allowed rate (the stub's quota in every window the run touched, over the wall
time), achieved rate (requests answered 200 over the wall time), their ratio, the share of requests the stub answered
429 (the openai client's retries included) and the wall time. Target: >= 90 % of the allowed rate with at
most 2 % of requests answered 429.

    python bench/ratelimit.py                      # 2,000 calls, 6,000 requests/min in 4 s windows, 200 ms replies
    python bench/ratelimit.py --requests 500 --rpm 3000 --window 3
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolab.llm import LLMError, OpenAICompatibleBackend  # noqa: E402
from evolab.llm.client import LLMClient  # noqa: E402

MODES = [  # (name, evolab's limiter on, stub sends x-ratelimit-* headers, stub sends Retry-After on a 429)
    ("evolab, headers", True, True, True),
    ("evolab, no headers, Retry-After", True, False, True),
    ("evolab, no headers, no Retry-After", True, False, False),
    ("fixed 64, headers", False, True, True),
    ("fixed 64, no headers, Retry-After", False, False, True),
    ("fixed 64, no headers, no Retry-After", False, False, False),
]


def _serve(queue, rpm: float, window: float, latency: float, headers: bool, retry_after: bool) -> None:
    """The stub in its own process (as bench/throughput.py does), so it does not share the client's CPU."""
    from evolab.testing.stub_server import StubServer

    with StubServer(latency=latency, rpm=rpm, window_s=window, ratelimit_headers=headers,
                    ratelimit_retry_after=retry_after) as stub:
        queue.put(stub.base_url)
        queue.get()  # "stop"
        offset = time.time() - time.monotonic()  # the stub's windows count from stub._t0 (monotonic)
        queue.put([(int((r["time"] - offset - stub._t0) // window), r["status"]) for r in stub.chat_requests()])


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


def run_mode(name: str, adaptive: bool, headers: bool, retry_after: bool, args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(queue, args.rpm, args.window, args.latency, headers, retry_after),
                       daemon=True)
    proc.start()
    base_url = queue.get(timeout=60)
    backend = OpenAICompatibleBackend(model="bench-model", base_url=base_url, timeout_s=60, max_retries=6)
    client = LLMClient(backend, None, concurrency=args.concurrency, adaptive=adaptive)
    start = time.perf_counter()
    ok, failed = asyncio.run(_calls(client, args.requests))
    wall = time.perf_counter() - start
    queue.put("stop")
    requests = queue.get(timeout=60)
    proc.join(10)
    statuses = [s for _, s in requests]
    # What the stub would have accepted: a full quota in every window the run touched (fixed windows let
    # a run start and end on a full one, so requests / wall can exceed the nominal rate).
    windows = {w for w, _ in requests}
    capacity = int(args.rpm * args.window / 60) * (max(windows) - min(windows) + 1)
    allowed = capacity / wall
    achieved = statuses.count(200) / wall
    return {"mode": name, "allowed": allowed, "achieved": achieved, "ratio": statuses.count(200) / capacity,
            "share_429": statuses.count(429) / max(1, len(statuses)), "n_429": statuses.count(429),
            "requests": len(statuses), "failed": failed, "wall": wall,
            "final": client.limiter.state()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000, help="calls to make (default 2000)")
    p.add_argument("--rpm", type=float, default=6000, help="requests a minute the stub allows (default 6000)")
    p.add_argument("--window", type=float, default=4.0, help="the stub's window in seconds (default 4)")
    p.add_argument("--latency", type=float, default=0.2, help="the stub's reply time in seconds (default 0.2)")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--modes", default="all", help="comma-separated mode numbers 1-6 (default all)")
    args = p.parse_args()
    chosen = MODES if args.modes == "all" else [MODES[int(i) - 1] for i in args.modes.split(",")]
    print(f"{args.requests} calls, concurrency {args.concurrency}, stub: {args.rpm:g} requests/min in fixed "
          f"{args.window:g} s windows ({args.rpm * args.window / 60:g} a window), replies in {args.latency * 1000:g} ms",
          file=sys.stderr)
    rows = []
    for mode in chosen:
        r = run_mode(*mode, args)
        rows.append(r)
        print(f"  {r['mode']}: {r['achieved']:.1f}/s ({r['ratio']:.0%}), 429s {r['n_429']}/{r['requests']}, "
              f"failed {r['failed']}, {r['wall']:.1f} s; limiter at the end: concurrency "
              f"{r['final']['concurrency']}, cuts {r['final']['cuts']}", file=sys.stderr)
    print()
    print("| mode | allowed req/s | achieved req/s | achieved/allowed | answered 429 | calls failed | wall s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['allowed']:.1f} | {r['achieved']:.1f} | {r['ratio']:.0%} | "
              f"{r['share_429']:.1%} ({r['n_429']} of {r['requests']}) | {r['failed']} | {r['wall']:.1f} |")


if __name__ == "__main__":
    main()
