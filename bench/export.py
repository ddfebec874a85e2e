"""Peak memory of exports: `python -m evolab export` streams records from the store, so its peak memory
should not grow with the run; the in-memory path (`evolab.export.formats.export_run`, the whole text at once)
is shown for comparison.

    .venv/bin/python bench/export.py --nodes 100000          # builds a store of that many answered nodes
    .venv/bin/python bench/export.py --nodes 100000 --db /tmp/x.db   # reuse a store built before

Each export runs in a fresh process; peak memory is that process's maximum resident set (ru_maxrss).
"""
from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("revenue margin interest loan bond yield rate cash flow quarter budget equity risk return asset "
         "explain compare calculate describe step reason why because therefore example table").split()

MEASURE = """
import resource, sys, time
sys.argv = {argv!r}
start = time.perf_counter()
{body}
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
CLI = "from evolab.cli.main import main\nassert main(sys.argv[1:]) == 0"
IN_MEMORY = ("from evolab.store import Store\nfrom evolab.export import formats as export\ns = Store(sys.argv[2])\n"
             "text = export.export_run(s, s.latest_run_id(), sys.argv[1], status='all')\n"
             "open(sys.argv[3], 'w', encoding='utf-8').write(text)")
BASELINE = "import evolab.cli.main, evolab.export.formats, evolab.store"


def build(db: Path, n: int) -> None:
    from evolab.schema import Node, RunConfig, Score, Seed
    from evolab.store import Store

    rng = random.Random(0)
    text = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    store = Store(db)
    run_id = store.create_run(RunConfig(model="bench"), [Seed("seed")], name="export-bench")
    chunk = 10_000
    for start in range(0, n, chunk):
        nodes, scores = [], []
        for i in range(start, min(n, start + chunk)):
            node = Node(id=f"n{i:07d}", run_id=run_id, parent_id=None, root_id="n0000000", round=i % 5,
                        operation="deepen", instruction=text(50), response=text(250), status="kept")
            nodes.append(node)
            scores += [Score(node.id, "difficulty", rng.randint(1, 10), "bench"),
                       Score(node.id, "quality", rng.randint(0, 5), "bench")]
        store.save_nodes(nodes)
        store.record_step(None, scores)
    store.close()


def measure(body: str, argv: list[str]) -> tuple[float, float]:
    r = subprocess.run([sys.executable, "-c", MEASURE.format(argv=argv, body=body)], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    seconds, mib = r.stdout.split()[-2:]
    return float(seconds), float(mib)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--db", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "export.db"
        if not db.exists():
            t = time.perf_counter()
            build(db, args.nodes)
            print(f"built {args.nodes:,} nodes in {time.perf_counter() - t:.0f} s ({db.stat().st_size / 2**20:.0f} MiB)")
        _, base = measure(BASELINE, ["x"])
        print(f"python + evolab imports alone: {base:.0f} MiB peak")
        print("| format | streamed (CLI) | in memory (export_run) | file |")
        print("|---|---|---|---|")
        for fmt in ("alpaca", "sharegpt", "openai", "lineage"):
            out = Path(tmp) / f"out.{fmt}"
            s_sec, s_mib = measure(CLI, ["evolab", "export", "--db", str(db), "--format", fmt, "--status", "all",
                                         "--out", str(out)])
            size = out.stat().st_size / 2**20
            m_sec, m_mib = measure(IN_MEMORY, ["x", fmt, str(db), str(out)])
            print(f"| {fmt} | {s_mib:.0f} MiB peak, {s_sec:.1f} s | {m_mib:.0f} MiB peak, {m_sec:.1f} s | {size:.0f} MiB |")


if __name__ == "__main__":
    main()
