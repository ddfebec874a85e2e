"""How many in-depth children `--dedup` removes on the shipped finance seeds.

Runs `evolab/data/finance.jsonl` for 3 rounds with the scripted model (in-process, no network): its in-depth
child keeps every word of its parent and adds a clause, as in-depth evolution does ("add constraints",
"deepen" ...), so ROUGE-L between a child and its own parent is high while the child is a real evolution.
Prints the share of in-depth children eliminated as `duplicate`.

    .venv/bin/python bench/dedup.py                      # this checkout
    .venv/bin/python bench/dedup.py --repo /tmp/old      # another checkout of evolab (e.g. before the fix)

The scripted model is the extreme case (it keeps the parent's words verbatim); real models paraphrase more,
so the share they lose is lower. The point is the difference between comparing with one's own ancestors
and not.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(HERE), help="the evolab checkout to measure")
    parser.add_argument("--seeds", default=str(HERE / "evolab" / "data" / "finance.jsonl"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, args.repo)

    from evolab.llm import FakeBackend
    from evolab.schema import RunConfig
    from evolab.store import Store

    try:  # evolab in packages (this checkout)
        from evolab.engine import pipeline
        from evolab.seeds.files import load_seeds
    except ImportError:  # a checkout from before the move into packages (e.g. 92462f9)
        from evolab import pipeline
        from evolab.seeds import load_seeds
    try:  # the operation registry
        from evolab.engine.operations import in_depth_operations
        in_depth = tuple(in_depth_operations())
    except ImportError:  # before it: a constant in schema
        from evolab.schema import IN_DEPTH_OPERATIONS as in_depth

    seeds = load_seeds(args.seeds)
    rows = []
    for dedup in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "dedup.db")
            config = RunConfig(model="fake", base_url="http://fake", rounds=args.rounds, concurrency=16,
                               operation_weights={op: 1.0 for op in in_depth})
            config.rules.duplicate = dedup
            run_id = pipeline.create_run(store, seeds, config)
            pipeline.run_sync(store, run_id, backend=FakeBackend())
            children = [n for n in store.nodes(run_id) if n.round > 0]
            rules = Counter(n.rule for n in children if n.status != "kept")
            removed = rules.get("duplicate", 0)
            rows.append((dedup, len(children), sum(n.status == "kept" for n in children), removed))
            store.close()
    print(f"evolab at {args.repo}; {len(seeds)} seeds, {args.rounds} rounds, in-depth operations only, scripted model\n")
    print("| --dedup | in-depth children | kept | removed as duplicate | share removed |")
    print("|---|---:|---:|---:|---:|")
    for dedup, n, kept, removed in rows:
        print(f"| {'on' if dedup else 'off'} | {n} | {kept} | {removed} | {removed / n:.0%} |")


if __name__ == "__main__":
    main()
