"""`python -m evolab embed ...`: calibrate an embedding model's thresholds, show the ones in force.

    python -m evolab embed calibrate --model ~/models/my-st-model --db evolab.db
    python -m evolab embed calibrate --base-url http://localhost:8000/v1 --model e5-query --db evolab.db
    python -m evolab embed show --model multilingual-e5-small-q4
    python -m evolab embed --db evolab.db --run R --ray     # a large run's instructions, on a Ray cluster

A calibrated model's thresholds go to the store's meta (the shipped models' are in
evolab/data/embedding_thresholds.json); maps, marks and seed lint on that database then use them.
`embed --run R` embeds a run's instructions into the store's embedding cache (the one the Diversity page and the
warm-up read) with the run's map embedder; `--ray` does it on a Ray cluster (evolab/embeddings/raymap.py).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from evolab.analysis.frames import map_embedder, nodes_frame
from evolab.cli.common import BadInput, open_store, pick_run_id
from evolab.embeddings import calibration as cal
from evolab.embeddings import embed
from evolab.embeddings.raymap import RayEmbedder
from evolab.llm.raycluster import RayMissing, require_ray


def add_embed_parser(sub, default_db: str) -> None:
    embed_p = sub.add_parser("embed", help="embedding models: calibrate near-duplicate thresholds, show them")
    embed_p.add_argument("--db", dest="run_db", default=default_db, help="with --run: the store of the run to embed")
    embed_p.add_argument("--run", help="embed this run's instructions (\"latest\": the newest) into the store's "
                                       "embedding cache, as the Diversity page would")
    embed_p.add_argument("--ray", action="store_true", help="with --run: embed on a Ray cluster, as map_batches over "
                                                            "actors that load the model once (docs/ray.md)")
    embed_p.add_argument("--ray-address", metavar="ADDR", help="with --ray: join this cluster (default "
                                                               "$RAY_ADDRESS, else a local Ray)")
    embed_p.add_argument("--ray-actors", type=int, default=2, metavar="N", help="with --ray: actors (default 2)")
    embed_p.set_defaults(func=cmd_embed_run)
    cmds = embed_p.add_subparsers(dest="embed_command")

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="multilingual-e5-small-q4 (default), all-MiniLM-L6-v2, a local "
                                       "sentence-transformers folder, or the model name at --base-url")
        p.add_argument("--base-url", help="an OpenAI-compatible /v1 embeddings endpoint")
        p.add_argument("--api-key-env", help="name of the environment variable that holds the endpoint's key")
        p.add_argument("--db", default=default_db, help="the store whose calibrated thresholds to use or update")

    p = cmds.add_parser("calibrate", help="calibrate a model on labelled paraphrase / unrelated pairs and store "
                                          "its thresholds in the database")
    model_args(p)
    p.add_argument("--pairs", help="JSONL of {a, b, label: paraphrase|unrelated, language} "
                                   "(default: the shipped English + Korean corpus)")
    p.add_argument("--languages", nargs="+", help="only pairs of these languages (e.g. en for an English-only model)")
    p.set_defaults(func=cmd_embed_calibrate)

    p = cmds.add_parser("show", help="the thresholds a model uses, and where they come from")
    model_args(p)
    p.set_defaults(func=cmd_embed_show)


def _embedder(args: argparse.Namespace):
    try:
        return embed.make_embedder(args.model, base_url=args.base_url, api_key_env=args.api_key_env)
    except ValueError as e:
        raise BadInput(str(e)) from None


def cmd_embed_calibrate(args: argparse.Namespace) -> int:
    store = open_store(args.db, must_exist=False)  # a bad --db fails now, not after embedding every pair
    embedder = _embedder(args)
    try:
        pairs = cal.load_pairs(args.pairs)
        entry = cal.calibrate(embedder, pairs, source=args.pairs or "tests/data/embeddings/pairs.jsonl",
                              languages=args.languages)
    except ValueError as e:
        raise BadInput(str(e)) from None
    cal.save_to_store(store, embedder.name, entry)
    print(f"{embedder.name}: near-duplicate at cosine >= {entry['near_duplicate']:.4f}, "
          f"novelty filter at >= {entry['novelty']:.4f}")
    for lang, v in entry["languages"].items():
        print(f"  {lang}: AUC {v['auc']:.3f}, paraphrase is the nearest neighbour {v['nn_rate']:.0%}, "
              f"mean cosine paraphrase {v['paraphrase_mean']:.3f} / unrelated {v['unrelated_mean']:.3f}; "
              f"the threshold catches {v['near_duplicate_recall']:.0%} of paraphrases and marks "
              f"{v['near_duplicate_fpr']:.0%} of unrelated pairs")
    print(f"stored in {args.db}")
    return 0


def cmd_embed_show(args: argparse.Namespace) -> int:
    name = args.model or embed.DEFAULT_MODEL_NAME
    if args.base_url or (args.model and Path(args.model).expanduser().is_dir()):
        name = _embedder(args).name
    store = open_store(args.db) if Path(args.db).exists() else None  # README.md: exit 2, not a DatabaseError
    info = embed.threshold_info(name, store)
    print(f"{info.model}: near-duplicate at cosine >= {info.near_duplicate:.4f}, novelty filter at >= "
          f"{info.novelty:.4f} ({info.source})")
    if info.note:
        print(info.note)
    return 0


def cmd_embed_run(args: argparse.Namespace) -> int:
    """`embed --run R [--ray]`: every instruction of the run, with the run's map embedder, into the cache."""
    if not args.run:
        raise BadInput("Give a subcommand (calibrate, show) or --run R (\"latest\" for the newest run) to embed "
                       "a run's instructions.")
    if args.ray:
        try:
            require_ray()  # exit 2 with the install command, before anything is loaded
        except RayMissing as e:
            raise BadInput(str(e)) from None
    elif args.ray_address:
        raise BadInput("--ray-address goes with --ray.")
    store = open_store(args.run_db)
    run_id = pick_run_id(store, None if args.run == "latest" else args.run)
    nodes = nodes_frame(store, run_id, fill_complexity=False)
    embedder = map_embedder(nodes)
    todo = embed.count_unembedded(embed.node_texts(nodes), embedder, store)
    if args.ray and todo:
        try:
            embedder = RayEmbedder(embedder, actors=args.ray_actors, address=args.ray_address,
                                   log=lambda msg: print(msg, file=sys.stderr))
        except ValueError as e:
            raise BadInput(str(e)) from None
    start = time.perf_counter()
    embed.embed_nodes(nodes, embedder, store)
    where = f"on Ray, {args.ray_actors} actors" if args.ray and todo else "in this process"
    print(f"run {run_id}: {len(nodes):,} instructions, {todo:,} embedded {where} with {embedder.name} in "
          f"{time.perf_counter() - start:.1f} s; the Diversity page reads them from {store.path}")
    return 0
