"""The CLI of batch mode: --batch options on run/resume, and `batch cancel|export|import|status`."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from evolab.cli.common import DEFAULT_DB, BadInput, check_out_path, check_until_round, open_store, pick_run_id
from evolab.engine.batch import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_MB,
    DEFAULT_MAX_REQUESTS,
    FALLBACKS,
    BatchOptions,
    PollPolicy,
    ResultsFileError,
    batch_summary,
    cancel_run_batches,
    export_requests,
    import_results_file,
    run_batched,
)
from evolab.engine.raybatch import DEFAULT_BLOCK_ROWS, RAY_POLL, RayOptions, run_on_ray
from evolab.llm.raycluster import RayMissing, require_ray

BATCH_ENGINES = ("openai", "ray")  # --batch (the endpoint's Batch API) or --batch ray (a Ray Dataset)


def add_batch_options(p: argparse.ArgumentParser, new_run: bool = False) -> None:
    if new_run:
        p.add_argument("--batch-export", metavar="FILE",
                       help="create the run and write its first stage's requests as batch JSONL, sending none (for "
                            "vLLM run-batch or another service; then `batch import`)")
    p.add_argument("--batch", nargs="?", const="openai", choices=BATCH_ENGINES,
                   help="run each stage of a round as one job of the endpoint's Batch API (OpenAI: half price, up to "
                        "24 h per job); a killed run resumes by polling its jobs, never submitting them twice. "
                        "`--batch ray`: each stage as a Ray Dataset through Ray Data's LLM API (docs/ray.md)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="with --batch ray: join this Ray cluster (default $RAY_ADDRESS, else a local Ray with this "
                        "machine's cores)")
    p.add_argument("--ray-endpoint", action="append", metavar="URL",
                   help="with --batch ray: an OpenAI-compatible /v1 URL serving the run's --model (e.g. a vLLM "
                        "replica); repeat it to spread the requests (default: the run's --base-url). The run's key "
                        "goes to each")
    p.add_argument("--ray-workers", type=int, default=2, metavar="N",
                   help="with --batch ray: Ray actors sending requests, per endpoint (default 2)")
    p.add_argument("--ray-block-rows", type=int, default=DEFAULT_BLOCK_ROWS, metavar="N",
                   help=f"with --batch ray: requests per Dataset block, the unit of resume (default "
                        f"{DEFAULT_BLOCK_ROWS})")
    p.add_argument("--batch-fallback", choices=FALLBACKS, default="resubmit",
                   help="requests a job failed or did not answer (expired): resubmit in the next job (default, up to "
                        "--batch-attempts jobs) or send them online at once")
    p.add_argument("--batch-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS, metavar="N",
                   help=f"jobs a request may fail in before its step fails (default {DEFAULT_MAX_ATTEMPTS})")
    p.add_argument("--batch-poll", type=float, default=5.0, metavar="S",
                   help="first wait between status polls, growing 1.5x with jitter (default 5 s)")
    p.add_argument("--batch-poll-max", type=float, default=60.0, metavar="S", help="longest wait between polls "
                                                                                    "(default 60 s)")
    p.add_argument("--batch-max-requests", type=int, default=DEFAULT_MAX_REQUESTS, metavar="N",
                   help=f"most requests in one job; a stage with more is split (default {DEFAULT_MAX_REQUESTS:,}, "
                        "OpenAI's limit)")
    p.add_argument("--batch-max-mb", type=float, default=DEFAULT_MAX_MB, metavar="MB",
                   help=f"largest input file of one job, in MB (default {DEFAULT_MAX_MB}, OpenAI's limit)")


def batch_options(args: argparse.Namespace) -> Any:
    """The batch.BatchOptions that --batch and its options ask for, or None without --batch."""

    if not getattr(args, "batch", None):
        if getattr(args, "ray_address", None) or getattr(args, "ray_endpoint", None):
            raise ValueError("--ray-address and --ray-endpoint go with --batch ray.")
        return None
    if args.batch_poll <= 0 or args.batch_poll_max < args.batch_poll:
        raise ValueError("--batch-poll must be > 0 and --batch-poll-max at least --batch-poll.")
    if args.batch_max_requests < 1 or args.batch_max_mb <= 0:
        raise ValueError("--batch-max-requests must be at least 1 and --batch-max-mb more than 0.")
    if args.batch == "ray":
        try:
            require_ray()  # exit 2 with the install command, before a run is created or a call is paid
        except RayMissing as e:
            raise BadInput(str(e)) from None
        explicit_poll = args.batch_poll != 5.0 or args.batch_poll_max != 60.0
        poll = PollPolicy(first_s=args.batch_poll, max_s=args.batch_poll_max) if explicit_poll else RAY_POLL
        return RayOptions(endpoints=args.ray_endpoint or [], address=args.ray_address, workers=args.ray_workers,
                          block_rows=args.ray_block_rows,
                          batch=BatchOptions(poll=poll, fallback=args.batch_fallback, max_attempts=args.batch_attempts,
                                             max_requests=args.batch_max_requests,
                                             max_bytes=int(args.batch_max_mb * 1_000_000)))
    return BatchOptions(poll=PollPolicy(first_s=args.batch_poll, max_s=args.batch_poll_max),
                        fallback=args.batch_fallback, max_attempts=args.batch_attempts,
                        max_requests=args.batch_max_requests, max_bytes=int(args.batch_max_mb * 1_000_000))


def export_new_run(store: Any, run_id: str, out: str) -> int:
    """`run --batch-export FILE`: the new run's first stage written out, nothing sent (but the structured-output
    probe, which fails fast when the endpoint is not up)."""
    return _write_requests(store, run_id, out, None)


def run_with_batches(store: Any, run_id: str, options: BatchOptions | RayOptions, until_round: int | None,
                     progress: Callable | None) -> str:
    if isinstance(options, RayOptions):  # --batch ray: each stage a Ray Dataset (evolab/engine/raybatch.py)
        return run_on_ray(store, run_id, options, until_round=until_round, progress=progress,
                          log=lambda msg: print(msg, file=sys.stderr))
    return run_batched(store, run_id, options=options, until_round=until_round, progress=progress,
                       log=lambda msg: print(msg, file=sys.stderr))


def add_batch_commands(sub: Any) -> None:
    """`batch cancel|export|import|status`."""
    group = sub.add_parser("batch", help="batch jobs: cancel them, or hand a stage to vLLM run-batch / another service"
                           ).add_subparsers(dest="batch_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=DEFAULT_DB)
        p.add_argument("--run", help="run id (default: the latest)")

    p = group.add_parser("cancel", help="cancel the run's batch jobs in progress (the answers already in are kept)")
    common(p)
    p.set_defaults(func=_cancel)

    p = group.add_parser("export", help="write the pending stage's requests as batch JSONL (custom_id, method, url, "
                                        "body), e.g. for python -m vllm.entrypoints.openai.run_batch")
    common(p)
    p.add_argument("--out", required=True, help="the JSONL file to write")
    p.add_argument("--until-round", type=int)
    p.set_defaults(func=_export)

    p = group.add_parser("import", help="read a batch output file (OpenAI's or vLLM run-batch's format) and go on "
                                        "as far as the answers allow")
    common(p)
    p.add_argument("--results", required=True, help="the output JSONL")
    p.add_argument("--until-round", type=int)
    p.set_defaults(func=_import)

    p = group.add_parser("status", help="the run's batch jobs")
    common(p)
    p.set_defaults(func=_status)


def _cancel(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    run_id = pick_run_id(store, args.run)
    cancelled = cancel_run_batches(store, run_id)
    if not cancelled:
        print(f"run {run_id} has no batch job in progress.")
        return 0
    print(f"cancelling {len(cancelled)} job(s): {', '.join(cancelled)}. Answers already in are kept; go on with: "
          f"python -m evolab resume --db {store.path} --run {run_id} --batch")
    return 0


def _export(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    run_id = pick_run_id(store, args.run)
    check_out_path(args.out)  # before the pass, not after it
    check_until_round(args.until_round, store=store, run_id=run_id)
    return _write_requests(store, run_id, args.out, args.until_round)


def _write_requests(store: Any, run_id: str, out: str, until_round: int | None) -> int:
    n = export_requests(store, run_id, out, until_round=until_round)
    if n == 0:
        print(f"run {run_id} needs no more requests: it is {store.get_run(run_id)['status']}.")
        return 0
    print(f"{n} requests -> {out}. Run them, e.g. on a GPU machine:\n"
          f"  python -m vllm.entrypoints.openai.run_batch -i {out} -o results.jsonl --model "
          f"{store.get_run(run_id)['config'].model}\n"
          f"then: python -m evolab batch import --db {store.path} --run {run_id} --results results.jsonl")
    return 0


def _import(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    run_id = pick_run_id(store, args.run)
    check_until_round(args.until_round, store=store, run_id=run_id)
    try:
        r = import_results_file(store, run_id, args.results, until_round=args.until_round)
    except ResultsFileError as e:  # the file and the line, checked before anything is written: exit 2
        raise BadInput(str(e)) from None
    print(f"{r['answered']} answers imported, {r['failed']} failed lines, {r['unknown']} lines not asked for by "
          f"this run (ignored).")
    if r["pending"]:
        print(f"next stage: {r['pending']} requests. Write them with: python -m evolab batch export --db {store.path} "
              f"--run {run_id} --out requests.jsonl")
    else:
        print(f"run {run_id} is {r['status']}.")
    return 0


def _status(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    run_id = pick_run_id(store, args.run)
    s = batch_summary(store, run_id)
    print(f"run {run_id}: {len(s['jobs'])} batch jobs, {s['batch_calls']} calls answered by batch")
    for j in s["jobs"]:
        print(f"  #{j['id']} {j['engine']} {j['provider_batch_id'] or j['input_file_id'] or ''} "
              f"{j['status']}: {j['n_requests']} requests, {j['n_completed']} completed, {j['n_failed']} failed"
              + (f" ({j['error']})" if j["error"] else ""))
    return 0
