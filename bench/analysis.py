"""Analysis at scale: embed + UMAP + novelty + figures + report for N instructions (default 10,000).

Builds a deterministic synthetic run (templates x vocabulary, 1,000 seeds each with a 10-node tree over
3 rounds), then analyses it three times, each in a fresh process so imports, model loading and numba's
JIT are paid as a user would pay them:

  cold  nothing cached: every instruction is embedded (the app's model for the run, or --embedder);
  warm  the embeddings are cached in the store (the usual case: a second look at a run); UMAP refits;
  hot   the embeddings and the UMAP map (`<db>.umap/`) are cached.

Prints each stage's wall time and the process's peak resident memory (ru_maxrss: tracemalloc does not
see torch's allocations), then a markdown table for the README. Target: warm under 60 s end to end.

    python bench/analysis.py               # 10,000 instructions
    python bench/analysis.py --n 2000      # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPICS = ["tax law", "bond markets", "haiku", "merge sort", "photosynthesis", "the Roman empire", "household budgets",
          "SQL joins", "climate models", "probability", "salary negotiation", "Korean grammar", "compilers",
          "nutrition", "chess openings", "volcanoes", "jazz harmony", "supply chains", "vaccines", "black holes",
          "urban gardening", "public speaking", "encryption", "the French revolution", "machine translation",
          "coral reefs", "mortgage rates", "sleep hygiene", "game theory", "bread baking", "solar panels",
          "ancient Egypt", "time management", "neural networks", "marathon training", "copyright", "bees",
          "inflation", "origami", "earthquakes"]
TASKS = ["Explain {t} to {a}.", "Write a short essay on {t} for {a}.", "List five common mistakes in {t}.",
         "Compare two schools of thought on {t}.", "Give {a} a step-by-step guide to {t}.",
         "Summarise the history of {t} in one paragraph.", "Write a poem about {t}.",
         "Design a quiz about {t} for {a}.", "What are the biggest open questions in {t}?",
         "Describe a day in the life of an expert in {t}."]
AUDIENCES = ["a ten-year-old", "a retired engineer", "a busy manager", "a first-year student", "a sceptical journalist",
             "a non-native speaker", "a software developer", "a nurse"]
CLAUSES = {
    "constraints": ["Use at least {k} examples.", "Keep it under {n} words.", "Do not use jargon.",
                    "Include exactly {k} bullet points."],
    "deepen": ["Discuss the underlying mechanisms of {t}.", "Address the main criticisms of {t}.",
               "Go beyond the basics and cover edge cases."],
    "concretize": ["Focus on {place}.", "Use the case of {place} in {year}.", "Refer to a real event from {year}."],
    "reasoning": ["Explain your reasoning step by step.", "Justify each claim.",
                  "First state the assumptions, then derive the answer."],
    "complicate_input": ["Use the data table provided as input.", "Work from the attached survey results."],
    "breadth": ["Now do the same for {t2}.", "Relate it to {t2}."],
}
PLACES = ["Busan", "Lagos", "Oslo", "Lima", "Osaka", "Nairobi", "Quebec", "Perth"]
OPS = list(CLAUSES)


def synthetic_nodes(n: int, run_id: str, seed: int = 0):
    """A deterministic list of Nodes: seeds with 10-node trees (3 + 4 + 2 descendants over 3 rounds)."""
    from evolab.schema import Node

    rng = random.Random(seed)
    nodes: list[Node] = []
    t = 1_700_000_000.0
    k = 0

    def fill(template: str, topic: str) -> str:
        return template.format(t=topic, a=rng.choice(AUDIENCES), k=rng.randint(2, 7), n=rng.choice([80, 120, 200]),
                               place=rng.choice(PLACES), year=rng.randint(1950, 2024), t2=rng.choice(TOPICS))

    def child(parent: Node, r: int, status: str, rule: str | None, topic: str) -> Node:
        nonlocal t, k
        op = OPS[(k + rng.randint(0, 5)) % len(OPS)]
        t += 0.01
        k += 1
        text = f"{parent.instruction} {fill(rng.choice(CLAUSES[op]), topic)}"
        node = Node(id=f"n{k:06d}", run_id=run_id, parent_id=parent.id, root_id=parent.root_id, round=r,
                    operation=op, instruction=text, input="a,b\n1,2" if op == "complicate_input" else "",
                    response=None if status == "failed" else f"Answer {k}.", status=status, rule=rule,
                    created_at=t)
        nodes.append(node)
        return node

    s = 0
    while len(nodes) < n:
        topic = rng.choice(TOPICS)
        t += 0.01
        root = Node(id=f"s{s:05d}", run_id=run_id, parent_id=None, root_id=f"s{s:05d}", round=0, operation="seed",
                    instruction=fill(rng.choice(TASKS), topic), response=f"Seed answer {s}.", status="seed",
                    created_at=t)
        nodes.append(root)
        s += 1
        r1 = [child(root, 1, "kept", None, topic), child(root, 1, "kept", None, topic),
              child(root, 1, *rng.choice([("eliminated", "refusal"), ("eliminated", "no_new_information"),
                                          ("failed", "llm_error")]), topic)]
        r2 = [child(p, 2, st, rule, topic) for p in r1[:2]
              for st, rule in (("kept", None), rng.choice([("kept", None), ("eliminated", "duplicate")]))]
        for _ in range(2):
            child(r2[0], 3, "kept", None, topic)
    return nodes[:n]


def build_store(db: Path, n: int) -> str:
    from evolab.schema import LLMCall, RunConfig, Score, Seed
    from evolab.store import Store
    from evolab.text.complexity import complexity_scores

    store = Store(db)
    run_id = "bench"
    nodes = synthetic_nodes(n, run_id)
    seeds = [Seed(x.instruction) for x in nodes if x.round == 0]
    store.create_run(RunConfig(model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1", rounds=3, fanout=3), seeds,
                     name="bench", run_id=run_id)
    rng = random.Random(1)
    with store.transaction() as c:  # one transaction: building the fixture is not what is measured
        for x in nodes:
            store._upsert_node(c, x)
            if x.status != "failed":
                scores = complexity_scores(x) + [Score(x.id, "difficulty", 3 + x.round + rng.random() * 3, "gpt-4o-mini"),
                                                 Score(x.id, "quality", 3 + rng.random() * 2, "gpt-4o-mini")]
                for sc in scores:
                    store._put_score(c, sc)
            for purpose in (("evolve", "respond") if x.round else ("respond",)):
                store._put_call(c, LLMCall(purpose, "gpt-4o-mini", 120, 200, 1.0, 0.0002, run_id=run_id,
                                           node_id=x.id))
    store.set_run_status(run_id, "finished")
    store.close()
    return run_id


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def analyse(db: Path, run_id: str, stage: str, embedder_name: str | None = None) -> dict:
    """One analysis in this (fresh) process; returns the seconds per step."""
    times: dict[str, float] = {"python start + imports": 0.0}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name] = times.get(name, 0.0) + now - t
        t = now

    from evolab.analysis import frames as analysis
    from evolab.analysis import viz
    from evolab.analysis.report import write_report
    from evolab.embeddings import embed, novelty
    from evolab.store import Store

    times["python start + imports"] = time.perf_counter() - T_START
    t = time.perf_counter()
    store = Store(db)
    nodes = analysis.nodes_frame(store, run_id)
    lap("read nodes + scores")
    # the app's choice for this run (MiniLM: the synthetic run is English), or the one asked for
    embedder = embed.make_embedder(embedder_name) if embedder_name else embed.embedder_from_env(nodes["instruction"])
    vectors = embed.embed_nodes(nodes, embedder, store)
    lap("embed (cold: load model + encode; else read the store)")
    if stage != "hot":  # a cached map never imports umap
        embed.warm_umap()
    lap("UMAP import + JIT")
    # cold and warm fit the map (the cold report leaves it in <db>.umap/ for the hot run)
    coords = embed.umap_coords(vectors, cache_dir=embed.umap_cache_dir(store) if stage == "hot" else None)
    lap("UMAP fit (n_epochs=200)")
    threshold = embed.run_map_threshold(embedder, store)  # the model's own, for a run's map
    frame = novelty.mark_duplicates(nodes, vectors, threshold)
    frame["x"], frame["y"] = coords[:, 0], coords[:, 1]
    diversity = novelty.diversity_frame(frame, vectors, threshold=threshold)
    lap("near-duplicates + diversity")
    figures = {
        "lineage": viz.lineage_figure(nodes),
        "umap": viz.umap_figure(frame, "round"),
        "drift": viz.drift_figure(analysis.round_operation_frame(nodes, include_all=True), "difficulty"),
        "eliminations": viz.eliminations_figure(analysis.eliminations_frame(nodes)),
        "diversity": viz.diversity_figure(diversity),
        "cost": viz.cost_figure(analysis.cost_frame(analysis.calls_frame(store, run_id, nodes))),
    }
    lap("figures")
    import plotly.graph_objects as go

    webgl = all(isinstance(tr, go.Scattergl) for tr in figures["lineage"].data)
    out = db.parent / f"report-{stage}.html"
    write_report(store, run_id, out, embedder=embedder)
    lap("HTML report")
    total = time.perf_counter() - T_START
    return {"stage": stage, "times": times, "total": total, "peak_mib": peak_mib(), "nodes": len(nodes),
            "embedded": embedder.texts_embedded, "umap_fits": embed.COUNTERS["umap_fits"],
            "lineage_webgl": webgl, "report_mb": out.stat().st_size / 1e6,
            "near_duplicates": int(frame["near_duplicate"].sum()), "embedder": embedder.name,
            "threshold": threshold}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="instructions (nodes) in the synthetic run")
    p.add_argument("--db", help="keep the store here (default: a temporary folder)")
    p.add_argument("--stage", choices=["cold", "warm", "hot"], help=argparse.SUPPRESS)  # a child process
    p.add_argument("--run", default="bench", help=argparse.SUPPRESS)
    p.add_argument("--embedder", help="embedding model (default: the app's choice for the run, MiniLM here; "
                                      "e.g. multilingual-e5-small-q4)")
    args = p.parse_args()
    if args.stage:
        print(json.dumps(analyse(Path(args.db), args.run, args.stage, args.embedder)))
        return

    tmp = tempfile.TemporaryDirectory(prefix="evolab-bench-")
    db = Path(args.db) if args.db else Path(tmp.name) / "bench.db"
    for f in db.parent.glob(db.name + "*"):
        if f.is_file():
            f.unlink()
    start = time.perf_counter()
    run_id = build_store(db, args.n)
    print(f"built a run of {args.n} nodes in {time.perf_counter() - start:.1f} s -> {db}", file=sys.stderr)
    results = []
    for stage in ("cold", "warm", "hot"):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--stage", stage, "--db", str(db), "--run", run_id]
                              + (["--embedder", args.embedder] if args.embedder else []),
                              capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if proc.returncode != 0:
            sys.exit(f"{stage} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["wall"] = time.perf_counter() - start
        results.append(result)
        print(f"{stage}: {result['wall']:.1f} s wall, peak {result['peak_mib']:.0f} MiB, "
              f"embedded {result['embedded']}, UMAP fits {result['umap_fits']}, "
              + ", ".join(f"{k} {v:.1f} s" for k, v in result["times"].items()), file=sys.stderr)

    steps = list(dict.fromkeys(k for r in results for k in r["times"]))
    print(f"\nAnalysis of {results[0]['nodes']:,} instructions ({os.cpu_count()} CPUs, "
          f"{results[0]['embedder']} on CPU, UMAP n_epochs=200); seconds per step, fresh process each:\n")
    print("| step | cold (nothing cached) | warm (embeddings cached) | hot (embeddings + map cached) |")
    print("|---|---:|---:|---:|")
    for step in steps:
        print(f"| {step} | " + " | ".join(f"{r['times'][step]:.1f}" if step in r["times"] else "-" for r in results)
              + " |")
    print("| **end to end (wall)** | " + " | ".join(f"**{r['wall']:.1f}**" for r in results) + " |")
    print("| peak memory (ru_maxrss, MiB) | " + " | ".join(f"{r['peak_mib']:.0f}" for r in results) + " |")
    print("| texts embedded / UMAP fits | " + " | ".join(f"{r['embedded']:,} / {r['umap_fits']}" for r in results)
          + " |")
    print(f"\nLineage figure uses WebGL (Scattergl): {results[0]['lineage_webgl']}; "
          f"report {results[0]['report_mb']:.1f} MB; near-duplicates (cosine >= {results[0]['threshold']:.3f}, "
          f"the model's threshold): {results[0]['near_duplicates']:,}; load average {os.getloadavg()[0]:.1f}.")
    warm = results[1]["wall"]
    print(f"Target: warm end to end under 60 s -> {'met' if warm < 60 else 'MISSED'} ({warm:.1f} s).")
    tmp.cleanup()


if __name__ == "__main__":
    main()
