"""`python -m evolab tune`: template tuning and template versions from the terminal (logic in evolab/audit/tuning.py).

    tune --run R --operation OP [--candidates 4] [--dev-seeds 20] [--language L] [--adopt N]   a new session
    tune --resume SESSION [--adopt N]                                                          go on with one
    tune --session SESSION [--adopt N] [--name NAME]                                            show / adopt
    tune --list [--operation OP]                                                                versions
    tune --operation OP --compare VERSION_A VERSION_B                                           judge two versions
"""
from __future__ import annotations

import argparse
import asyncio
import sys

from evolab.audit import tuning
from evolab.cli.common import BadInput, open_store, pick_run_id
from evolab.engine.operations import operation_names
from evolab.engine.templates import all_versions
from evolab.llm.base import LLMError
from evolab.llm.client import LLMClient, make_backend
from evolab.llm.openai_backend import with_endpoint


def add_tune_arguments(p: argparse.ArgumentParser, db_default: str) -> None:
    p.add_argument("--db", default=db_default)
    p.add_argument("--run", help="the run whose failed children teach the optimizer (default: the latest)")
    p.add_argument("--operation", help="the operation whose template to tune (constraints, deepen, ...)")
    p.add_argument("--candidates", type=int, default=4, help="revised templates to ask for (default 4)")
    p.add_argument("--dev-seeds", type=int, default=20, help="seeds of the run each candidate is tried on for one "
                                                             "round (default 20)")
    p.add_argument("--language", choices=["en", "ko"], help="template language (default: that of most failures)")
    p.add_argument("--base-url", help="optimizer endpoint (default: the run's own)")
    p.add_argument("--model", help="optimizer model (default: the run's own)")
    p.add_argument("--api-key-env", help="NAME of the variable holding the optimizer's key (the run's own is never "
                                         "sent to another --base-url)")
    p.add_argument("--adopt", type=int, metavar="N", help="save candidate N as a new template version (without it, "
                                                          "a terminal asks)")
    p.add_argument("--name", help="name of the adopted version (default OP-HASH)")
    p.add_argument("--resume", metavar="SESSION", help="go on with a session a crash or a stop cut short")
    p.add_argument("--session", metavar="SESSION", help="show a finished session (and --adopt from it)")
    p.add_argument("--list", action="store_true", help="list template versions (shipped and tuned)")
    p.add_argument("--compare", nargs=2, metavar=("VERSION_A", "VERSION_B"),
                   help="judge what two versions of --operation kept, pairwise with the answers swapped")


def tune_command(args: argparse.Namespace, store) -> int:
    try:
        if args.list:
            return _list(store, args.operation)
        if args.compare:
            return _compare(store, args)
        if args.session:
            result = tuning.summary(store, args.session)
        else:
            sid = args.resume or _start(store, args)
            print(f"tuning session {sid}", file=sys.stderr)
            try:
                result = asyncio.run(tuning.run_session(store, sid, progress=_print_progress))
            except KeyboardInterrupt:
                print(f"\nStopped. Go on with: python -m evolab tune --db {store.path} --resume {sid}", file=sys.stderr)
                return 130
        print(tuning.format_summary(result))
        return _adopt(store, result, args)
    except tuning.TuningError as e:
        raise BadInput(str(e)) from None


def _start(store, args: argparse.Namespace) -> str:
    if not args.operation:
        raise BadInput("Name the operation to tune: --operation OP (e.g. constraints).")
    if args.base_url and not args.model:
        raise BadInput("With --base-url, name the optimizer model too: --model NAME.")
    run_id = pick_run_id(store, args.run)
    if args.base_url:  # the optimizer on another server gets no key of the run's (tuning._optimizer_config)
        _, note = with_endpoint(store.get_run(run_id)["config"], base_url=args.base_url, model=args.model,
                                api_key_env=args.api_key_env)
        if note:
            print(f"note: {note}", file=sys.stderr)
    return tuning.start_session(store, run_id, args.operation, candidates=args.candidates,
                                dev_seeds=args.dev_seeds, language=args.language,
                                optimizer={"base_url": args.base_url, "model": args.model,
                                           "api_key_env": args.api_key_env})


def _print_progress(p: dict) -> None:
    stage = p["stage"]
    if stage == "collected":
        print(f"  {p['failures']} failed children collected", file=sys.stderr)
    elif stage == "optimizer":
        print("  asking the optimizer for revised templates ...", file=sys.stderr)
    elif stage == "proposed":
        print(f"  {p['valid']} of {p['proposed']} candidates keep every placeholder", file=sys.stderr)
    elif stage == "measuring":
        who = "the current template" if p["candidate"] == 0 else f"candidate {p['candidate']}"
        print(f"  dev run {p['n']}/{p['of']}: {who} (run {p['run_id']})", file=sys.stderr)


def _adopt(store, result: dict, args: argparse.Namespace) -> int:
    sid = result["session"]["id"]
    idx = args.adopt
    if idx is None and sys.stdin.isatty() and sys.stdout.isatty() and result["session"]["status"] == "measured":
        choices = [c["idx"] for c in result["candidates"] if c["idx"] > 0 and c["status"] == tuning.MEASURED]
        hint = f" (best: {result['best']})" if result["best"] is not None else ""
        answer = input(f"Adopt a candidate {choices}{hint}? Number, or Enter to keep the current template: ").strip()
        if not answer:
            return 0
        try:
            idx = int(answer)
        except ValueError:
            print(f"{answer!r} is not a candidate number; nothing adopted.", file=sys.stderr)
            return 2
    if idx is None:
        print(f"Adopt one with: python -m evolab tune --db {store.path} --session {sid} --adopt N [--name NAME]",
              file=sys.stderr)
        return 0
    version = tuning.adopt(store, sid, idx, name=args.name)
    print(f"adopted candidate {idx} as {version.language}/{version.operation} version {version.label}; use it with "
          f"--template {version.operation}={version.name}")
    return 0


def _list(store, operation: str | None) -> int:
    if operation and operation not in operation_names():
        raise BadInput(f"Unknown operation {operation!r}; choose from {', '.join(operation_names())}.")
    for v in all_versions(store):
        if operation and v.operation != operation:
            continue
        parent = f" <- {v.parent_version}" if v.parent_version else ""
        print(f"{v.language}/{v.operation:17} {v.version}  {v.name}{parent}  {v.note or ''}".rstrip())
    return 0


def _compare(store, args: argparse.Namespace) -> int:
    if not args.operation:
        raise BadInput("--compare needs the operation: --operation OP.")
    a, b = tuning.resolve_pair(store, args.operation, args.compare[0], args.compare[1], args.language)
    items = tuning.version_items(store, a, b)
    if not items:
        print(tuning.format_comparison({"comparison": tuning.versions_comparison(a, b), "n": 0}, a, b))
        return 0
    # The judge: the endpoint of the run that made the first pair (or --base-url / --model).
    config = store.get_run(items[0].a.node.run_id)["config"]
    if args.base_url and not args.model:
        raise BadInput("With --base-url, name the judge model too: --model NAME.")
    if args.base_url or args.model:  # never the run's key on another host
        config, note = with_endpoint(config, base_url=args.base_url, model=args.model, api_key_env=args.api_key_env)
        if note:
            print(f"note: {note}", file=sys.stderr)

    async def go() -> dict:
        client = LLMClient(make_backend(config), store, concurrency=config.concurrency, structured=config.structured)
        try:
            return await tuning.compare_versions(store, client, a, b, max_tokens=config.max_tokens_judge,
                                                 temperature=config.temperature_judge)
        finally:
            await client.aclose()

    try:
        result = asyncio.run(go())
    except LLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(tuning.format_comparison(result, a, b))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    return tune_command(args, open_store(args.db))
