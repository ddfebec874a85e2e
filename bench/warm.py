"""A CLI run's wall time with and without the Diversity map's warm-up, and the time from the run's end to a ready
Diversity page (issue 28).

    .venv/bin/python bench/warm.py --seeds 300 --rounds 2

Each mode is one `python -m evolab run` against the stub server (in its own process, instant replies), on English
seeds (so the app's map embedder is the packaged MiniLM; `--korean` for e5):
- `EVOLAB_WARM=0`: no map. Then the page's own work, timed as a fresh `python -m evolab.analysis.warmup` (the
  same embedding and UMAP fit a first open of the page does, in a process that has imported nothing yet);
- `EVOLAB_WARM=wait`: the old way, the map prepared before the command returns;
- default: a detached process prepares it; "to a ready page" is the time from the command's return until that
  process has stored the map (its state in the store: done).
Wall-clock times on a shared machine: read them as an order of magnitude.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evolab.analysis import warmup  # noqa: E402
from evolab.store import Store  # noqa: E402

STUB_CODE = """
import sys
from evolab.testing.stub_server import StubServer
s = StubServer().start()
print(s.base_url, flush=True)
sys.stdin.read()
"""
KEY_ENV = "EVOLAB_BENCH_STUB_KEY"


def write_seeds(path: Path, n: int, korean: bool) -> None:
    topics = ["the sea", "a bicycle", "taxes", "photosynthesis", "a job interview", "compound interest"]
    ko = ["바다", "자전거", "세금", "광합성", "면접", "복리"]
    lines = [f"{ko[i % len(ko)]}에 대해 초보자에게 설명하세요. 사례 {i}." if korean else
             f"Explain {topics[i % len(topics)]} to a beginner, case {i}." for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_cli(env: dict, seeds: Path, db: Path, base_url: str, rounds: int, warm: str) -> float:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "evolab", "run", str(seeds), "--db", str(db), "--rounds", str(rounds),
                        "--base-url", base_url, "--model", "gpt-4o-mini", "--api-key-env", KEY_ENV,
                        "--concurrency", "16"], cwd=ROOT, env=dict(env, EVOLAB_WARM=warm), capture_output=True,
                       text=True)
    took = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    return took


def wait_done(db: Path, timeout: float = 3600) -> dict:
    store = Store(db)
    run_id = store.latest_run_id()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            state = warmup.read_state(store, run_id) or {}
            if state.get("state") in (warmup.DONE, warmup.FAILED):
                return state
            time.sleep(0.1)
    finally:
        store.close()
    raise SystemExit("the warm-up did not finish")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--korean", action="store_true")
    args = ap.parse_args()
    stub = subprocess.Popen([sys.executable, "-c", STUB_CODE], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    base_url = stub.stdout.readline().strip()
    env = {**os.environ, KEY_ENV: "sk-bench"}
    for var in ("EVOLAB_EMBED_MODEL", "EVOLAB_EMBED_BASE_URL", "EVOLAB_EMBED_KEY_ENV"):
        env.pop(var, None)  # the packaged embedder the app would choose
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            seeds = Path(tmp) / "seeds.txt"
            write_seeds(seeds, args.seeds, args.korean)
            db = Path(tmp) / "none.db"
            run = run_cli(env, seeds, db, base_url, args.rounds, "0")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "evolab.analysis.warmup", "--db", str(db), "--run",
                            Store(db).latest_run_id()], cwd=ROOT, env=env, check=True, capture_output=True)
            rows.append(("no map (EVOLAB_WARM=0 / --no-warm)", run, time.perf_counter() - start,
                         "the page embeds and fits on its first open"))
            db = Path(tmp) / "wait.db"
            run = run_cli(env, seeds, db, base_url, args.rounds, "wait")
            rows.append(("map in the foreground (EVOLAB_WARM=wait, the old default)", run, 0.0, "ready when it returns"))
            db = Path(tmp) / "bg.db"
            run = run_cli(env, seeds, db, base_url, args.rounds, "1")
            returned = time.perf_counter()
            state = wait_done(db)
            rows.append(("map in a background process (the default)", run, time.perf_counter() - returned,
                         f"warm-up {state['state']}"))
            nodes = Store(db).run_summary(Store(db).latest_run_id())["nodes"]
    finally:
        stub.stdin.close()
        stub.wait(timeout=30)
    print(f"{args.seeds} seeds x {args.rounds} rounds ({nodes:,} instructions, "
          f"{'Korean: e5' if args.korean else 'English: MiniLM'})\n")
    print("| mode | the CLI run's wall time (s) | from the run's end to a ready Diversity page (s) | |")
    print("|---|---:|---:|---|")
    for mode, run, ready, note in rows:
        print(f"| {mode} | {run:.1f} | {ready:.1f} | {note} |")
    print(json.dumps({"rows": rows}), file=sys.stderr)


if __name__ == "__main__":
    main()
