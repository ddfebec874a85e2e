"""How long each app page takes to open for a run of N nodes (default 1,000).

Builds a run with the scripted model (seeds x rounds with fan-out 2, so about N nodes), then opens every
page through Streamlit's AppTest in one process: the first open (caches cold: embeddings and UMAP are
computed) and a second open (what a user sees when they come back to a page). AppTest times the script
run on the server, not the browser's drawing.

    python bench/pages.py            # about 1,000 nodes
    python bench/pages.py --seeds 50 --rounds 3
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGES = ["pages/seeds.py", "pages/evolve.py", "pages/runs.py", "pages/lineage.py", "pages/drift.py",
         "pages/diversity.py", "pages/compare.py", "pages/export.py"]


def build_store(path: str, n_seeds: int, rounds: int, fanout: int) -> tuple[str, int]:
    from evolab.engine.pipeline import create_run, run_sync
    from evolab.llm import FakeBackend
    from evolab.schema import RunConfig
    from evolab.seeds.files import load_example
    from evolab.store import Store

    examples = load_example("general") + load_example("finance")
    seeds = [examples[i % len(examples)] for i in range(n_seeds)]
    for i, s in enumerate(seeds):  # distinct seeds
        s.instruction = f"{s.instruction} (variant {i})"
    store = Store(path)
    run_id = create_run(store, seeds, RunConfig(model="gpt-4o-mini", rounds=rounds, fanout=fanout,
                                                 concurrency=64), name="bench")
    run_sync(store, run_id, backend=FakeBackend(model="gpt-4o-mini"))
    return run_id, len(store.nodes(run_id))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=67)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fanout", type=int, default=2)
    args = p.parse_args()
    folder = tempfile.mkdtemp(prefix="evolab-pages-")
    db = os.path.join(folder, "evolab.db")
    os.environ["EVOLAB_DB"] = db
    t = time.perf_counter()
    run_id, n_nodes = build_store(db, args.seeds, args.rounds, args.fanout)
    print(f"run {run_id}: {n_nodes} nodes built in {time.perf_counter() - t:.1f} s", flush=True)

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    rows = []
    for page in PAGES:
        times = []
        for _ in range(2):
            at.switch_page(page)
            start = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - start)
        problems = [str(e.value)[:80] for e in at.exception]
        rows.append((page, times[0], times[1], problems))
        print(f"{page:22} first open {times[0]:6.2f} s   again {times[1]:6.2f} s   {problems or ''}", flush=True)
    print(f"\n| page ({n_nodes} nodes) | first open s | open again s |\n|---|---:|---:|")
    for page, first, again, _ in rows:
        print(f"| {Path(page).stem} | {first:.2f} | {again:.2f} |")


if __name__ == "__main__":
    main()
