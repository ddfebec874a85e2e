"""`python -m evolab select`: choose the best N kept nodes of one or several runs (Deita: score first, skip what is
too close to a node already chosen), write them in an export format and record how they were chosen.

    python -m evolab select --db evolab.db --run RUN --n 1000 --out train.json --format alpaca
    python -m evolab select --db evolab.db --run A --run B --n 5000 --score difficulty*quality*cx_index \\
        --cap-by lineage --cap 3 --checked consistent,unchecked --out train.jsonl --format openai

See evolab/analysis/select.py and docs/select.md.
"""
from __future__ import annotations

import argparse

from evolab.analysis import select as selection
from evolab.cli.common import BadInput, check_out_path, open_store, parse_min_scores, pick_run_id
from evolab.embeddings import embed
from evolab.export.formats import FORMATS


def add_select_parser(sub, default_db: str) -> None:
    p = sub.add_parser("select", help="choose the best N kept nodes, skipping near-duplicates (Deita), and write "
                                      "them in an export format")
    p.add_argument("--db", default=default_db)
    p.add_argument("--run", action="append", help="run id; repeat for several runs (default: the latest)")
    p.add_argument("--n", type=int, required=True, help="how many nodes to choose")
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=list(FORMATS), default="alpaca")
    p.add_argument("--score", default="*".join(selection.DEFAULT_SCORE),
                   help="the sort score: score metrics multiplied, e.g. difficulty*quality (default), quality, "
                        "difficulty*quality*cx_index")
    p.add_argument("--threshold", type=float, help="too close at cosine >= this (default: the embedder's "
                                                   "calibrated threshold, see --threshold-kind)")
    p.add_argument("--threshold-kind", choices=selection.THRESHOLD_KINDS, default="run_map",
                   help="which calibrated threshold: run_map (nearly the same text; default), novelty (also "
                        "evolved rewrites of it), near_duplicate (paraphrases)")
    p.add_argument("--cap-by", choices=list(selection.CAP_BY), help="cap what one seed lineage or one skill takes")
    p.add_argument("--cap", type=int, help="with --cap-by: at most this many per lineage or skill")
    p.add_argument("--min-score", action="append", metavar="METRIC=VALUE", help="a filter, e.g. quality=4")
    p.add_argument("--checked", metavar="LIST", help="only answer checks among: consistent, inconsistent, "
                                                     "not_checkable, unchecked (comma list)")
    p.add_argument("--reviews", choices=selection.REVIEW_FILTERS, default="not_discarded",
                   help="not_discarded: leave out what a reviewer discarded (default); kept: only reviewed keeps; any")
    p.add_argument("--include-seeds", action="store_true", help="the seeds (round 0) are candidates too")
    p.add_argument("--rouge", action="store_true", help="also skip ROUGE-L over 0.7 with a chosen node "
                                                        "(MinHash LSH finds the candidates)")
    p.add_argument("--embed-model", help="embedder (default: EVOLAB_EMBED_MODEL, else the one the Diversity map "
                                         "uses for these nodes' languages)")
    p.add_argument("--embed-base-url", help="an OpenAI-compatible /v1 embeddings endpoint for --embed-model")
    p.set_defaults(func=cmd_select)


def params_from_args(args: argparse.Namespace) -> selection.SelectionParams:
    min_scores = parse_min_scores(args.min_score)
    try:
        params = selection.SelectionParams(
            n=args.n, score=selection.parse_score(args.score), threshold=args.threshold,
            threshold_kind=args.threshold_kind, cap_by=args.cap_by, cap=args.cap, min_scores=min_scores,
            checked=tuple(c.strip() for c in args.checked.split(",")) if args.checked else (),
            reviews=args.reviews, include_seeds=args.include_seeds, rouge=args.rouge)
        params.check()
    except ValueError as e:  # SelectionError, or an unknown check status
        raise BadInput(str(e)) from None
    return params


def cmd_select(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    check_out_path(args.out)
    store = open_store(args.db)
    run_ids = [pick_run_id(store, r) for r in (args.run or [None])]
    embedder = None
    if args.embed_model or args.embed_base_url:
        try:
            embedder = embed.make_embedder(args.embed_model, base_url=args.embed_base_url)
        except (ValueError, OSError) as e:
            raise BadInput(f"--embed-model: {e}") from None
    try:
        chosen = selection.select(store, run_ids, params, embedder=embedder)
    except selection.SelectionError as e:
        raise BadInput(str(e)) from None
    count = selection.write_selection(store, chosen, args.format, args.out)
    sid = selection.record_selection(store, chosen, out_path=args.out, out_format=args.format)
    print(chosen.summary())
    print(f"wrote {count} records ({args.format}) to {args.out}; selection {sid} recorded in {args.db}")
    if count < params.n:
        print(f"note: only {count} of {params.n} could be chosen: lower the score filters, raise --threshold or "
              "the cap, or add runs.")
    return 0
