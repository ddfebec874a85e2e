"""How long `evolab select` takes at 10,000 and 100,000 kept nodes, with the embeddings already cached.

Builds a store with one run of N kept nodes (1,000 seed lineages, 3 skills, difficulty 1-10 and quality 0-5 at
random), and puts a *synthetic* 384-dimension vector for every node into the store's embedding cache (2,000 cluster
centres plus noise, so some nodes are too close to others): the timing is of reading the nodes and the cached
vectors, sorting and the greedy pass, not of an embedding model (the packaged MiniLM embeds about 240-570
instructions a second here: 100,000 would take minutes once, then come from the cache). The embedder used for the
selection refuses to encode anything, so every vector does come from the cache.

    .venv/bin/python bench/selection.py                 # 10,000 and 100,000 nodes
    .venv/bin/python bench/selection.py --sizes 10000   # one size

(Named selection.py, not select.py: a file in bench/ named like the standard library's `select` module would
shadow it for every benchmark run from this folder, and asyncio imports it.)
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evolab.analysis import select as sel  # noqa: E402
from evolab.analysis.frames import nodes_frame  # noqa: E402
from evolab.embeddings import embed  # noqa: E402
from evolab.schema import Node, RunConfig, Score, Seed  # noqa: E402
from evolab.store import Store  # noqa: E402

DIM = 384
# instruction texts: words from a Zipf vocabulary (frequent words shared, as in real text), for --rouge
_rng = random.Random(5)
WORDS = list(dict.fromkeys("".join(_rng.choice(["ka", "lo", "mi", "ten", "ra", "so", "vi", "den", "pu", "ex"])
                                   for _ in range(_rng.randint(1, 4))) for _ in range(8000)))[:4000]
ZIPF = [1 / (k + 1) for k in range(len(WORDS))]
SKILLS = ("writing", "math", "coding")


class CachedOnly:
    name = "bench-synthetic-384"

    def __init__(self, vectors: dict[str, np.ndarray] | None = None):
        self.vectors = vectors

    def encode(self, texts):
        if self.vectors is None:
            raise RuntimeError("a vector was not in the cache")
        return np.stack([self.vectors[t] for t in texts])


def build(path: Path, n: int, lineages: int = 1000) -> str:
    rng = np.random.default_rng(0)
    r = random.Random(0)
    store = Store(path)
    seeds = [Seed(f"seed instruction {i}", skill=SKILLS[i % 3]) for i in range(lineages)]
    run_id = store.create_run(RunConfig(model="fake", base_url="http://fake"), seeds)
    centres = rng.normal(size=(2000, DIM)).astype(np.float32)
    nodes, scores, vectors = [], [], {}
    for i in range(lineages):
        sid = f"{run_id}-s{i}"
        nodes.append(Node(sid, run_id, None, sid, 0, "seed", seeds[i].instruction, response="a", status="seed",
                          skill=seeds[i].skill))
    for k in range(n):
        lineage = r.randrange(lineages)
        sid = f"{run_id}-s{lineage}"
        text = f"{' '.join(r.choices(WORDS, ZIPF, k=r.randint(8, 40)))} ({k})"
        nodes.append(Node(f"{run_id}-n{k}", run_id, sid, sid, 1 + k % 4, "deepen", text, response="an answer",
                          status="kept", skill=SKILLS[lineage % 3]))
        scores += [Score(f"{run_id}-n{k}", "difficulty", float(r.randint(1, 10)), "bench"),
                   Score(f"{run_id}-n{k}", "quality", float(r.randint(0, 10)) / 2, "bench"),
                   Score(f"{run_id}-n{k}", "cx_index", r.random(), "bench")]
        centre = centres[r.randrange(len(centres))]
        vectors[embed.node_text(text, "")] = centre + rng.normal(scale=0.35, size=DIM).astype(np.float32)
    store.save_nodes(nodes)
    store.add_scores(scores)
    embed.embed_texts(list(vectors), CachedOnly(vectors), store)  # into the cache
    store.close()
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    print("| kept nodes | N chosen | options | nodes frame | selection (vectors from the cache + greedy) | "
          "record in the store | chosen | skipped as too close |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for n in [int(x) for x in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "select.db"
            run_id = build(path, n)
            store = Store(path)
            for pick, options in ((n // 10, {}), (n // 10, {"cap_by": "lineage", "cap": 3}),
                                  (n // 10, {"rouge": True})):
                t0 = time.perf_counter()
                nodes = nodes_frame(store, run_id)
                t1 = time.perf_counter()
                params = sel.SelectionParams(n=pick, threshold=0.9, **options)
                chosen = sel.select(store, run_id, params, embedder=CachedOnly(), nodes=nodes)
                t2 = time.perf_counter()
                sel.record_selection(store, chosen)
                t3 = time.perf_counter()
                label = ", ".join(f"{k}={v}" for k, v in options.items()) or "score difficulty x quality"
                too_close = int((chosen.frame["reason"] == "near_duplicate").sum())
                print(f"| {n:,} | {pick:,} | {label} | {t1 - t0:.1f} s | {t2 - t1:.1f} s | {t3 - t2:.1f} s | "
                      f"{len(chosen.chosen):,} | {too_close:,} |", flush=True)
            store.close()


if __name__ == "__main__":
    main()
