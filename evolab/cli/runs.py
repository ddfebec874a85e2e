"""Running: `run`, `resume`, `runs`, `estimate` and `serve-local`, and the options that build a run's config."""
from __future__ import annotations

import argparse
import json
import os
import sys

from tqdm import tqdm

from evolab.analysis.frames import warm_map
from evolab.analysis.opstats import run_operation_table
from evolab.analysis.warmup import log_path, start_background_warm
from evolab.app.support import seed_set_label
from evolab.cli.batch import batch_options, export_new_run, run_with_batches
from evolab.cli.common import BadInput, check_out_path, check_until_round, load_seed_file, open_store, pick_run_id
from evolab.engine.batch import BatchError
from evolab.engine.estimate import estimate_run, format_estimate
from evolab.engine.lease import describe_holder, hold
from evolab.engine.pipeline import create_run, run_sync
from evolab.engine.runconfig import RunConfigError, apply_price_choices, build_run_config, check_budget_price, price_of
from evolab.engine.scoring import chosen_scorers_or_registered, default_scorers
from evolab.engine.templates import parse_template_options
from evolab.llm.base import LLMError, mask_secrets, redact_url
from evolab.llm.local import LocalModelError, serve_forever
from evolab.llm.ratelimit import describe
from evolab.schema import RunConfig
from evolab.seeds.versions import load_saved_set


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's RunConfig from the command line: evolab.engine.runconfig builds and checks it (the Runs page
    uses the same builder, so both say the same words about the same bad choice); a bad choice is exit 2."""
    rules: dict = {}
    if getattr(args, "no_equal_judge", False):
        rules["use_equal_judge"] = False
    if getattr(args, "dedup", False):
        rules["duplicate"] = True
    if getattr(args, "quality_filter", None) is not None:
        rules["quality_filter"], rules["quality_min"] = True, args.quality_filter
    check = bool(getattr(args, "check_answers", False))  # issue 12: checked answers (evolab/engine/checking.py)
    try:
        return build_run_config(
            model=args.model, base_url=getattr(args, "base_url", None), api_key_env=getattr(args, "api_key_env", None),
            rounds=args.rounds, fanout=args.fanout, ops=args.ops, language=getattr(args, "language", "auto"),
            max_tokens_evolve=getattr(args, "max_tokens_evolve", None),
            max_tokens_respond=getattr(args, "max_tokens_respond", None),
            max_tokens_judge=getattr(args, "max_tokens_judge", None),
            concurrency=getattr(args, "concurrency", None), random_seed=getattr(args, "seed", None),
            budget_usd=getattr(args, "budget_usd", None), name=getattr(args, "name", None),
            rpm=getattr(args, "rpm", None), tpm=getattr(args, "tpm", None),
            check_answers=check or None, check_k=args.check_k if check else None,
            rules=rules, rule_off=getattr(args, "rule_off", None), structured=getattr(args, "structured", None),
            scorers=getattr(args, "scorers", None), price=getattr(args, "price", None),
            prices_file=getattr(args, "prices", None), budget_tokens=getattr(args, "budget_tokens", None))
    except RunConfigError as e:
        raise BadInput(str(e)) from None


def _price_options(args: argparse.Namespace, cfg) -> None:
    """--price IN,OUT, --prices FILE and --budget-tokens N into a stored run's `cfg` (resume); exit 2 on a bad one."""

    try:
        apply_price_choices(cfg, price=getattr(args, "price", None), prices_file=getattr(args, "prices", None),
                            budget_tokens=getattr(args, "budget_tokens", None))
    except RunConfigError as e:
        raise BadInput(str(e)) from None


def require_price_for_budget(cfg) -> None:
    """A dollar budget needs a price: without one the run does not start (exit 2, saying what to do)."""

    try:
        check_budget_price(cfg)
    except RunConfigError as e:
        raise BadInput(str(e)) from None


# -- commands -----------------------------------------------------------------------------------------
def cmd_serve_local(args: argparse.Namespace) -> int:
    return serve_forever(args.port)


def cmd_estimate(args: argparse.Namespace) -> int:
    seeds = load_seed_file(args.seeds, args.map)
    print(format_estimate(estimate_run(seeds, config_from_args(args))))
    return 0


class _ProgressBar:
    def __init__(self) -> None:
        self.bar = tqdm(total=0, unit="step", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, p: dict) -> None:
        self.bar.total = p["expected"]
        self.bar.n = p["done"]
        s = p["by_status"]

        limits = describe(p.get("limiter"))  # req/min, tok/min and the limit in force
        self.bar.set_postfix_str(f"kept {s.get('kept', 0)} elim {s.get('eliminated', 0)} "
                                 f"failed {s.get('failed', 0)} calls {p['calls']} ${p['cost_usd']:.4f}"
                                 + (f" · {limits}" if limits else ""), refresh=False)
        self.bar.refresh()
        if p.get("final"):
            self.bar.close()


def _warm_map(store, run_id: str) -> None:
    """Embed the run and fit its Diversity map now (cached in the store), so the app's Diversity page
    and the report open at once; a failure only costs that head start."""

    tty = sys.stderr.isatty()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "embedding" and (tty or done in (0, total)):
            print(f"\rPreparing the Diversity map: embedding {done:,} of {total:,}", end="" if tty else "\n",
                  file=sys.stderr, flush=True)
        elif stage == "fitting":
            print(f"{chr(10) if tty else ''}Preparing the Diversity map: fitting the map on {total:,} instructions",
                  file=sys.stderr, flush=True)

    try:
        done = warm_map(store, run_id, progress=progress)
    except Exception as e:  # noqa: BLE001 - the run is done and saved; the page computes the map itself
        print(f"\nThe Diversity map was not prepared ({type(e).__name__}: {e}); the app computes it when "
              "the page opens.", file=sys.stderr)
        return
    if done["embedded"] or done["fitted"]:
        print(f"{chr(10) if tty and not done['fitted'] else ''}Diversity map ready ({done['nodes']:,} "
              f"instructions, {done['embedder']}; --no-warm skips this)", file=sys.stderr)


def _start_warm(store, run_id: str) -> None:
    """Warm the map in a detached process (evolab/analysis/warmup.py): the run is done when its last step is
    stored, and embedding a large run takes minutes (e5: some 65 instructions a second here)."""
    try:
        store.flush()  # every step on disk before another process reads the run
        pid = start_background_warm(store.path, run_id)
    except Exception as e:  # noqa: BLE001 - the run is done and saved; the page computes the map itself
        print(f"The Diversity map's warm-up did not start ({type(e).__name__}: {e}); the app computes the map "
              "when the page opens.", file=sys.stderr)
        return
    print(f"Preparing the Diversity map in the background (process {pid}, log {log_path(store.path, run_id)}); "
          "the app's Diversity page waits for it if opened first. --no-warm skips it, EVOLAB_WARM=wait waits for "
          "it here.", file=sys.stderr)


def _execute(store, run_id: str, until_round: int | None, warm: bool = True, batch=None) -> int:
    try:
        if batch is not None:  # --batch: each stage of a round as a batch job (evolab/cli/batch.py)
            status = run_with_batches(store, run_id, batch, until_round, _ProgressBar())
        else:
            status = run_sync(store, run_id, progress=_ProgressBar(), until_round=until_round)
    except (LLMError, LocalModelError, BatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        print(f"Fix it, then go on with: python -m evolab resume --db {store.path} --run {run_id}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nStopped. Go on with: python -m evolab resume --db {store.path} --run {run_id}", file=sys.stderr)
        return 130
    _print_summary(store, run_id, status)
    warming = os.environ.get("EVOLAB_WARM", "1").strip().lower()
    if warm and status in ("finished", "budget") and warming != "0":
        if warming == "wait":  # the old way: ready when the command returns
            _warm_map(store, run_id)
        else:
            _start_warm(store, run_id)
    if status == "failed":
        print(f"error: {mask_secrets(store.get_run(run_id)['error'])}", file=sys.stderr)
        print(f"Go on with: python -m evolab resume --db {store.path} --run {run_id}", file=sys.stderr)
        return 1
    if status == "budget":
        print(f"The budget stopped the run. Raise it and resume: python -m evolab resume --db {store.path} "
              f"--run {run_id} --budget-usd X (or --budget-tokens N)", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if bool(args.seeds) == bool(args.seed_set):
        raise BadInput("Give a seed file or --seed-set NAME (a set saved in the store), one of the two.")
    seeds = load_seed_file(args.seeds, args.map) if args.seeds else None
    config = config_from_args(args)
    require_price_for_budget(config)
    batch = _batch_options(args)  # a bad --batch-* value stops here, before a run is created
    check_until_round(args.until_round, rounds=config.rounds)  # so are a bad --until-round and --batch-export
    if args.batch_export:
        check_out_path(args.batch_export, "--batch-export")
    store = open_store(args.db, must_exist=seeds is None)
    if seeds is None:
        try:
            seeds = load_saved_set(store, args.seed_set, args.seed_set_version)
        except KeyError as e:
            raise BadInput(e.args[0]) from None
    if args.template:  # --template OP=VERSION, resolved in this store (evolab/engine/templates.py)

        try:
            config.templates = parse_template_options(store, args.template)
        except ValueError as e:
            raise BadInput(str(e)) from None
    run_id = create_run(store, seeds, config, name=args.name, seed_set=args.seed_set)
    print(f"run {run_id}: {len(seeds)} seeds x {config.rounds} rounds, fan-out {config.fanout}, "
          f"model {config.model} at {redact_url(config.base_url) or 'the embedded local model'} -> {args.db}", file=sys.stderr)
    price = price_of(config)
    print(f"price: {price.describe() if price else 'unknown (calls are counted as $0)'}", file=sys.stderr)
    if args.batch_export:  # the first stage's requests to a file, for vLLM run-batch (evolab/cli/batch.py)
        return export_new_run(store, run_id, args.batch_export)
    return _execute(store, run_id, args.until_round, warm=not args.no_warm, batch=batch)


def cmd_resume(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    run_id = pick_run_id(store, args.run)
    check_until_round(args.until_round, store=store, run_id=run_id)  # before the lease, a write or a call

    def waiting(holder: dict) -> None:
        print(f"Run {run_id} is being run by another engine: {describe_holder(holder)}. Waiting until it ends or "
              f"its lease expires ({holder['expiry_s']:g} s without a heartbeat); Ctrl-C gives up.",
              file=sys.stderr, flush=True)

    # The run's lease first, before any write (evolab/engine/lease.py): another engine's run is refused (exit 2,
    # naming it), waited for (--wait) or taken over (--take-over); the engine below runs under this lease.
    with hold(store, run_id, wait=args.wait, take_over=args.take_over, on_wait=waiting) as lease:
        if lease.previous is not None:
            gap = (lease.taken_at or 0) - lease.previous["heartbeat"]
            print(f"Took the run over from host {lease.previous['host']}, pid {lease.previous['pid']} (no heartbeat "
                  f"for {gap:.1f} s; its lease expires after {lease.previous['expiry_s']:g} s"
                  + ("; --take-over" if args.take_over else "") + ").", file=sys.stderr, flush=True)
        cfg = store.get_run(run_id)["config"]
        before = json.dumps(cfg.to_dict())
        if args.budget_usd is not None:  # raising the budget is the usual reason to resume
            cfg.budget_usd = args.budget_usd
        _price_options(args, cfg)
        require_price_for_budget(cfg)
        if json.dumps(cfg.to_dict()) != before:
            store.update_run_config(run_id, cfg)
        print(f"resuming run {run_id}", file=sys.stderr)
        return _execute(store, run_id, args.until_round, warm=not args.no_warm, batch=_batch_options(args))


def _batch_options(args: argparse.Namespace):
    try:
        return batch_options(args)
    except ValueError as e:
        raise BadInput(str(e)) from None


def _print_summary(store, run_id: str, status: str | None = None) -> None:
    run = store.get_run(run_id)
    s = store.run_summary(run_id)
    cost = f"${s['cost_usd']:.4f}" + ("" if s["price_known"] else " (price unknown)")
    print(f"{run_id}  {run['name']}  [{status or run['status']}]  model {run['config'].model}  "
          f"rounds {run['config'].rounds}")
    if run.get("seed_set"):
        print(f"  seeds: seed set {seed_set_label(run)}")
    print("  nodes: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_status"].items())) + f" (total {s['nodes']})")
    if s["by_rule"]:
        print("  eliminated/failed by rule: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_rule"].items())))
    metrics = [m for scorer in chosen_scorers_or_registered(run["config"]) for m in scorer.drift_metrics()]
    means = store.score_means(run_id, metrics)
    if any(n for _, n in means.values()):
        print("  mean scores: " + ", ".join(f"{m} {mean:.2f} (n {n})" for m, (mean, n) in means.items() if n))
    reasoning = f" (of which {s['reasoning_tokens']:,} reasoning)" if s.get("reasoning_tokens") else ""
    print(f"  calls {s['calls']} ({s['cached_calls']} cached, {s['failed_calls']} failed), tokens "
          f"{s['prompt_tokens']:,} in / {s['completion_tokens']:,} out{reasoning}, cost {cost}")


def cmd_runs(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    if args.by_operation:  # what each operation did in one run (default: the latest)

        run_id = pick_run_id(store, args.run)
        print(run_operation_table(store, run_id, [] if args.split == "none" else [args.split]))
        return 0
    runs = [store.get_run(pick_run_id(store, args.run))] if args.run else store.list_runs()
    if not runs:
        print(f"{args.db} has no runs yet.")
    for run in runs:
        _print_summary(store, run["id"])
    return 0


# -- parser ---------------------------------------------------------------------------------------------
def add_warm_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-warm", action="store_true", help="skip embedding the run and fitting its Diversity map "
                                                          "after it (by default a background process does it, so "
                                                          "the page opens at once; EVOLAB_WARM=0 skips it too, "
                                                          "EVOLAB_WARM=wait does it before the command returns)")


def add_run_options(p: argparse.ArgumentParser, endpoint: bool = True) -> None:
    p.add_argument("--rounds", type=int, default=4, help="evolution rounds (default 4, as in the paper)")
    p.add_argument("--fanout", type=int, default=1, help="operations tried per node per round (default 1)")
    p.add_argument("--ops", help="operations and weights: 'constraints,deepen' or 'constraints=2,breadth=1'; "
                                 "'adaptive' (or 'adaptive:constraints,deepen') learns the weights during the run "
                                 "by Thompson sampling on 'kept and harder than its parent'")
    p.add_argument("--model", help="model name (default: the embedded smollm2 when no --base-url)")
    p.add_argument("--language", choices=["auto", "en", "ko"], default="auto",
                   help="template language; auto detects per seed")
    p.add_argument("--max-tokens-evolve", type=int, help="cap of an evolved instruction (default 512; "
                                                         "192 on the embedded model)")
    p.add_argument("--max-tokens-respond", type=int, help="cap of an answer (default 1024; 192 on the embedded model)")
    p.add_argument("--max-tokens-judge", type=int, help="cap of a judge's reply (default 256; 96 on the embedded model)")
    p.add_argument("--scorers", metavar="NAME[,NAME]",
                   help="the scorers to run on every node, e.g. complexity,difficulty (default: "
                        f"{','.join(default_scorers())}); a plugin's scorer needs EVOLAB_PLUGINS or its package")
    p.add_argument("--structured", choices=["auto", "on", "off"], default=None,
                   help="ask judges and scorers for a JSON-schema reply: auto (probe the endpoint once and "
                        "remember; default), on (fail if it cannot), off (read free text)")
    add_price_options(p)
    if endpoint:
        p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 "
                                          "(default: the embedded local model)")
        p.add_argument("--api-key-env", help="NAME of the environment variable that holds the key "
                                             "(default OPENAI_API_KEY); the key is never stored")


def add_lease_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="while another engine runs the run (another terminal, the "
                   "app), wait until it ends or its lease expires, then go on (default: exit 2 naming it)")
    p.add_argument("--take-over", action="store_true", help="take the run over from the engine that holds it now, "
                   "without waiting for its lease to expire: only once you have checked that process is gone")


def add_price_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--price", metavar="IN,OUT", help="the model's price in USD per million input and output "
                                                     "tokens, e.g. 0.5,1.5 (overrides every table)")
    p.add_argument("--prices", metavar="FILE", help='a JSON price table {"model": [in, out]} over the built-in '
                                                    "one (also: EVOLAB_PRICES, JSON or a file path)")
