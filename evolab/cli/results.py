"""What a run made: `export`, `report`, `check` (checked answers), `judge` and `agreement`."""
from __future__ import annotations

import argparse
import asyncio
import sys

from evolab.analysis.report import write_report
from evolab.audit import judge
from evolab.audit.review import agreement_text, judge_footer
from evolab.cli.common import BadInput, check_out_path, open_store, parse_min_scores, pick_run_id
from evolab.cli.share import check_destinations, export_elsewhere, parse_formats
from evolab.engine.checking import TOLERANCE, check_run_sync, consistent_share, format_share, parse_checked
from evolab.llm.base import LLMError
from evolab.llm.client import LLMClient, make_backend
from evolab.llm.openai_backend import with_endpoint


def cmd_export(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    run_id = pick_run_id(store, args.run)
    min_scores = parse_min_scores(args.min_score)
    select = dict(status=args.status, include_seeds=not args.no_seeds, min_scores=min_scores or None,
                  rules=args.rules.split(",") if args.rules else None)
    if args.consistent_only or args.checked:  # checked answers (evolab/engine/checking.py)

        try:
            select["checked"] = parse_checked("consistent" if args.consistent_only else args.checked)
        except ValueError as e:
            raise BadInput(f"--checked: {e}") from None
    formats = parse_formats(args.format)
    token = check_destinations(args, formats)  # every destination checked before anything is written or sent
    return export_elsewhere(args, store, run_id, select, formats, token)


def cmd_check(args: argparse.Namespace) -> int:
    """Checked answers (self-consistency) for a stored run: evolab/engine/checking.py."""

    store = open_store(args.db)
    run_id = pick_run_id(store, args.run)
    if args.k < 1:
        raise BadInput("--k must be at least 1.")
    if not 0 < args.tolerance < 1:
        raise BadInput("--tolerance is relative: give a number between 0 and 1, e.g. 0.01 for 1%.")
    try:
        counts = check_run_sync(store, run_id, k=args.k, temperature=args.temperature, tolerance=args.tolerance,
                                recheck=args.recheck)
    except LLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"checked run {run_id}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f" (k={args.k}, temperature {args.temperature}, tolerance {args.tolerance:g}"
          + ("" if args.tolerance == TOLERANCE else f", default {TOLERANCE:g}") + ")")
    if counts["failed"]:
        print(f"{counts['failed']} items had a failed call and were not stored; run the same command again.",
              file=sys.stderr)
    print(format_share(consistent_share(store, [run_id])))
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    """Pairwise LLM judge, asked twice with the answers swapped (AlpaGasus / Vicuna)."""


    store = open_store(args.db)
    run_id = pick_run_id(store, args.run)
    if args.against:
        pick_run_id(store, args.against)
    elif args.rounds:
        try:
            round_a, round_b = (int(x) for x in args.rounds.split(","))
        except ValueError:
            raise BadInput(f"--rounds {args.rounds!r}: give two rounds, e.g. 0,2") from None
    else:
        raise BadInput("Say what to compare: --rounds A,B (two rounds of the run) or --against RUN_ID.")
    if args.base_url and not args.model:
        raise BadInput("With --base-url, name the judge model too: --model NAME.")
    config = store.get_run(run_id)["config"]
    if args.base_url or args.model:  # another judge than the run's own model: never the run's key on another host
        config, note = with_endpoint(config, base_url=args.base_url, model=args.model, api_key_env=args.api_key_env)
        if note:
            print(f"note: {note}", file=sys.stderr)

    async def go() -> dict:
        client = LLMClient(make_backend(config), store, concurrency=config.concurrency,
                           structured=args.structured or config.structured)
        kw = {"max_tokens": config.max_tokens_judge, "temperature": config.temperature_judge}
        try:
            if args.against:
                return await judge.judge_runs(store, client, run_id, args.against, **kw)
            return await judge.judge_rounds(store, client, run_id, round_a, round_b, **kw)
        finally:
            await client.aclose()

    try:
        result = asyncio.run(go())
    except LLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not result["n"]:
        print(f"{result['comparison']}: nothing to compare (no pair of answered nodes).")
        return 0
    print(f"{result['comparison']}: {result['n']} pairs judged twice with the answers swapped")
    for k in ("win", "tie", "lose", "unknown"):
        print(f"  A {k:8} {result[k]:5}  ({result[k + '_rate']:.0%})")

    sides = [("A", run_id, None), ("B", args.against, None)] if args.against else [
        (f"A (round {round_a})", run_id, [round_a]), (f"B (round {round_b})", run_id, [round_b])]
    print("\n".join(judge_footer(store, result["rows"], sides)))
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    """How often a person agreed with each rule and scorer (reviews made on the app's Review page)."""

    store = open_store(args.db)
    run_ids = [pick_run_id(store, r.strip()) for r in args.run.split(",")] if args.run else [pick_run_id(store, None)]
    print(agreement_text(store, run_ids))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    run_id = pick_run_id(store, args.run)
    check_out_path(args.out)
    path = write_report(store, run_id, args.out)
    print(f"wrote {path}")
    return 0
