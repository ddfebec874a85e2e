"""python -m evolab: the headless CLI over the same engine and store as the app.

Exit status: 0 success, 2 bad input (a message names the problem), 130 interrupted (Ctrl-C; resumable),
1 anything else.
Heavy optional libraries (torch, sentence-transformers, umap) load inside the commands that need them, so
`--help` starts fast.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys

from tqdm import tqdm

from evolab.analysis.frames import warm_map
from evolab.analysis.opstats import run_operation_table
from evolab.analysis.report import write_report
from evolab.app.support import seed_set_label
from evolab.audit import judge
from evolab.audit.review import agreement_text, judge_footer
from evolab.cli.batch import add_batch_commands, add_batch_options, batch_options, export_new_run, run_with_batches
from evolab.cli.common import DEFAULT_DB, BadInput, _run_id, _store
from evolab.cli.embed import add_embed_parser
from evolab.cli.tune import add_tune_arguments, tune_command
from evolab.engine.batch import BatchError
from evolab.engine.checking import TOLERANCE, check_run_sync, consistent_share, format_share, parse_checked
from evolab.engine.estimate import estimate_run, format_estimate
from evolab.engine.pipeline import create_run, run_sync
from evolab.engine.plugins import PluginError, load_plugins, plugin_errors
from evolab.engine.runconfig import (RunConfigError, apply_price_choices, build_run_config, check_budget_price,
                                     price_of)
from evolab.engine.scoring import chosen_scorers_or_registered, default_scorers
from evolab.engine.templates import parse_template_options
from evolab.export.formats import write_export
from evolab.llm.base import LLMError
from evolab.llm.client import LLMClient, make_backend
from evolab.llm.local import DEFAULT_PORT, LocalModelError, serve_forever
from evolab.llm.ratelimit import describe
from evolab.schema import RunConfig
from evolab.seeds.craft import GrowSpec, SeedcraftError, check_spec, grow_cli
from evolab.seeds.files import SeedFileError, format_summary, load_seeds, summarize
from evolab.seeds.importing import parse_mapping
from evolab.seeds.lint import format_report, lint_seeds
from evolab.seeds.versions import load_saved_set


def _load_seeds(path: str, mapping: str | None = None):
    try:
        return load_seeds(path, mapping=parse_mapping(mapping) or None)
    except SeedFileError as e:
        raise BadInput(str(e)) from e
    except ValueError as e:  # a bad --map
        raise BadInput(str(e)) from e
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file.") from None


def _config(args: argparse.Namespace) -> RunConfig:
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


def _check_budget_price(cfg) -> None:
    """A dollar budget needs a price: without one the run does not start (exit 2, saying what to do)."""

    try:
        check_budget_price(cfg)
    except RunConfigError as e:
        raise BadInput(str(e)) from None


# -- commands -----------------------------------------------------------------------------------------
def cmd_serve_local(args: argparse.Namespace) -> int:
    return serve_forever(args.port)


def cmd_seeds_check(args: argparse.Namespace) -> int:
    seeds = _load_seeds(args.file, args.map)
    print(f"{args.file}: OK")
    print(format_summary(summarize(seeds)))
    return 0


def cmd_seeds_lint(args: argparse.Namespace) -> int:
    report = lint_seeds(_load_seeds(args.file, args.map), use_embeddings=not args.no_embed)
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1) if args.json else format_report(report, args.file))
    return 1 if report.findings else 0


def cmd_seeds_grow(args: argparse.Namespace) -> int:
    """Grow a seed set Self-Instruct's way (evolab.seeds.craft); re-running the same command resumes the job."""

    seeds = _load_seeds(args.seeds)
    config = _config(args)
    _check_budget_price(config)
    spec = GrowSpec(seeds, n=args.n, language=None if args.language == "auto" else args.language,
                    target_skill=args.skill, target_difficulty=args.difficulty, random_seed=args.seed,
                    per_call=args.per_call or (8 if config.base_url else 4), temperature=config.temperature_evolve,
                    max_tokens=args.max_tokens or (1024 if config.base_url else 384),
                    # the embedded model's context is 2,048 tokens: 4 examples (3 + 1), no example inputs
                    example_input_chars=300 if config.base_url else 0,
                    examples=args.examples or (8 if config.base_url else 4))
    try:
        check_spec(spec)
    except SeedcraftError as e:
        raise BadInput(str(e)) from None
    return grow_cli(_store(args.db, must_exist=False), config, spec, out=args.out, max_calls=args.max_calls)


def cmd_estimate(args: argparse.Namespace) -> int:
    seeds = _load_seeds(args.seeds, args.map)
    print(format_estimate(estimate_run(seeds, _config(args))))
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
    if warm and status in ("finished", "budget") and os.environ.get("EVOLAB_WARM", "1") != "0":
        _warm_map(store, run_id)
    if status == "failed":
        print(f"error: {store.get_run(run_id)['error']}", file=sys.stderr)
        print(f"Go on with: python -m evolab resume --db {store.path} --run {run_id}", file=sys.stderr)
        return 1
    if status == "budget":
        print(f"The budget stopped the run. Raise it and resume: python -m evolab resume --db {store.path} "
              f"--run {run_id} --budget-usd X (or --budget-tokens N)", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if bool(args.seeds) == bool(args.seed_set):
        raise BadInput("Give a seed file or --seed-set NAME (a set saved in the store), one of the two.")
    seeds = _load_seeds(args.seeds, args.map) if args.seeds else None
    config = _config(args)
    _check_budget_price(config)
    batch = _batch_options(args)  # a bad --batch-* value stops here, before a run is created
    store = _store(args.db, must_exist=seeds is None)
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
          f"model {config.model} at {config.base_url or 'the embedded local model'} -> {args.db}", file=sys.stderr)
    price = price_of(config)
    print(f"price: {price.describe() if price else 'unknown (calls are counted as $0)'}", file=sys.stderr)
    if args.batch_export:  # the first stage's requests to a file, for vLLM run-batch (evolab/cli/batch.py)
        return export_new_run(store, run_id, args.batch_export)
    return _execute(store, run_id, args.until_round, warm=not args.no_warm, batch=batch)


def cmd_resume(args: argparse.Namespace) -> int:
    store = _store(args.db)
    run_id = _run_id(store, args.run)
    cfg = store.get_run(run_id)["config"]
    before = json.dumps(cfg.to_dict())
    if args.budget_usd is not None:  # raising the budget is the usual reason to resume
        cfg.budget_usd = args.budget_usd
    _price_options(args, cfg)
    _check_budget_price(cfg)
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
    store = _store(args.db)
    if args.by_operation:  # what each operation did in one run (default: the latest)

        run_id = _run_id(store, args.run)
        print(run_operation_table(store, run_id, [] if args.split == "none" else [args.split]))
        return 0
    runs = [store.get_run(_run_id(store, args.run))] if args.run else store.list_runs()
    if not runs:
        print(f"{args.db} has no runs yet.")
    for run in runs:
        _print_summary(store, run["id"])
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    store = _store(args.db)
    run_id = _run_id(store, args.run)
    min_scores = {}
    for item in args.min_score or []:
        metric, _, value = item.partition("=")
        try:
            min_scores[metric] = float(value)
        except ValueError:
            raise BadInput(f"--min-score {item!r}: use METRIC=NUMBER, e.g. quality=4.5") from None
    select = dict(status=args.status, include_seeds=not args.no_seeds, min_scores=min_scores or None,
                  rules=args.rules.split(",") if args.rules else None)
    if args.consistent_only or args.checked:  # checked answers (evolab/engine/checking.py)

        try:
            select["checked"] = parse_checked("consistent" if args.consistent_only else args.checked)
        except ValueError as e:
            raise BadInput(f"--checked: {e}") from None
    count = write_export(store, run_id, args.format, args.out, **select)  # streamed: bounded memory
    print(f"wrote {count} records ({args.format}) to {args.out}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Checked answers (self-consistency) for a stored run: evolab/engine/checking.py."""

    store = _store(args.db)
    run_id = _run_id(store, args.run)
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


    store = _store(args.db)
    run_id = _run_id(store, args.run)
    if args.against:
        _run_id(store, args.against)
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
    if args.base_url or args.model:  # another judge than the run's own model
        config = dataclasses.replace(config, base_url=args.base_url or config.base_url,
                                     model=args.model or config.model,
                                     api_key_env=args.api_key_env or config.api_key_env)

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

    store = _store(args.db)
    run_ids = [_run_id(store, r.strip()) for r in args.run.split(",")] if args.run else [_run_id(store, None)]
    print(agreement_text(store, run_ids))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    return tune_command(args, _store(args.db))


def cmd_report(args: argparse.Namespace) -> int:
    store = _store(args.db)
    run_id = _run_id(store, args.run)
    path = write_report(store, run_id, args.out)
    print(f"wrote {path}")
    return 0


# -- parser ---------------------------------------------------------------------------------------------
def _add_warm_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-warm", action="store_true", help="skip embedding the run and fitting its Diversity map "
                                                          "at the end (done by default so the page opens at once; "
                                                          "EVOLAB_WARM=0 skips it too)")


def _add_run_options(p: argparse.ArgumentParser, endpoint: bool = True) -> None:
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
    _add_price_options(p)
    if endpoint:
        p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 "
                                          "(default: the embedded local model)")
        p.add_argument("--api-key-env", help="NAME of the environment variable that holds the key "
                                             "(default OPENAI_API_KEY); the key is never stored")


def _add_price_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--price", metavar="IN,OUT", help="the model's price in USD per million input and output "
                                                     "tokens, e.g. 0.5,1.5 (overrides every table)")
    p.add_argument("--prices", metavar="FILE", help='a JSON price table {"model": [in, out]} over the built-in '
                                                    "one (also: EVOLAB_PRICES, JSON or a file path)")


def _add_map_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--map", metavar="FIELD=COLUMN,...", help="the columns that hold the seed fields, for files "
                   "with other names: e.g. instruction=question,input=context,skill=category,difficulty=level")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evolab", description="evolab: evolve instruction data with "
                                     "Evol-Instruct, see what it did, export training data.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve-local", help="serve the embedded SmolLM2-135M model (OpenAI-compatible) here")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_serve_local)

    seeds = sub.add_parser("seeds", help="seed files").add_subparsers(dest="seeds_command", required=True)
    p = seeds.add_parser("check", help="validate a seed file and summarise it by skill and difficulty")
    p.add_argument("file")
    _add_map_option(p)
    p.set_defaults(func=cmd_seeds_check)
    p = seeds.add_parser("grow", help="generate N more seeds in the set's domain and language (Self-Instruct); "
                                      "run it again to resume")
    p.add_argument("seeds")
    p.add_argument("--n", type=int, required=True, help="new seeds wanted")
    p.add_argument("--out", required=True, help="JSONL file for the grown set (the seeds, then the new ones)")
    p.add_argument("--db", default=DEFAULT_DB, help=f"the store that records every candidate (default {DEFAULT_DB})")
    p.add_argument("--model", help="model name (default: the embedded smollm2 when no --base-url)")
    p.add_argument("--language", choices=["auto", "en", "ko"], default="auto", help="default: the set's own")
    p.add_argument("--skill", help="grow seeds of this skill (tagged as proposed)")
    p.add_argument("--difficulty", help="grow seeds of this difficulty, 1-10 or a range like 7-8")
    p.add_argument("--per-call", type=int, help="instructions asked for per call (default 8; 4 on the embedded model)")
    p.add_argument("--examples", type=int, help="in-context examples per call, 3 of yours to 1 generated "
                                                "(default 8 = 6 + 2, Self-Instruct; 4 on the embedded model)")
    p.add_argument("--max-calls", type=int, help="stop after this many calls in this run (resume later)")
    p.add_argument("--max-tokens", type=int, help="reply cap per call (default 1024; 384 on the embedded model)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the example choices")
    p.add_argument("--budget-usd", type=float, help="stop before spending more than this")
    p.add_argument("--budget-tokens", type=int, metavar="N", help="stop before more than N tokens")
    p.add_argument("--rpm", type=int, help="cap on requests a minute")
    p.add_argument("--tpm", type=int, help="cap on tokens a minute")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (default: the embedded local model)")
    p.add_argument("--api-key-env", help="NAME of the environment variable that holds the key; never stored")
    _add_price_options(p)
    p.set_defaults(func=cmd_seeds_grow, rounds=1, fanout=1, ops=None, concurrency=1)
    p = seeds.add_parser("lint", help="rows to fix before a run (length, duplicates, mixed languages, missing tags, "
                                      "not a task); exit 1 when there are any")
    p.add_argument("file")
    _add_map_option(p)
    p.add_argument("--no-embed", action="store_true", help="skip embedding near-duplicates (no model is loaded)")
    p.add_argument("--json", action="store_true", help="the findings as JSON")
    p.set_defaults(func=cmd_seeds_lint)

    p = sub.add_parser("estimate", help="calls, tokens and cost of a run, as a low / expected / high range")
    p.add_argument("seeds")
    _add_map_option(p)
    _add_run_options(p, endpoint=False)
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("run", help="evolve a seed file")
    p.add_argument("seeds", nargs="?", help="a seed file (or use --seed-set)")
    _add_warm_option(p)
    _add_map_option(p)
    p.add_argument("--seed-set", metavar="NAME", help="a seed set saved in the store; the run records its version")
    p.add_argument("--seed-set-version", type=int, metavar="N", help="that set's version N (default: the latest)")
    p.add_argument("--db", default=DEFAULT_DB, help=f"the store (default {DEFAULT_DB})")
    _add_run_options(p)
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at most (default 8); lowered "
                                                              "on 429/503 and raised again as calls succeed")
    p.add_argument("--rpm", type=int, help="cap on requests a minute (the endpoint's rate-limit headers are "
                                           "followed anyway)")
    p.add_argument("--tpm", type=int, help="cap on tokens a minute (prompt + max tokens reserved per call, "
                                           "corrected by the usage returned)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed + cache = same run")
    p.add_argument("--budget-usd", type=float, help="stop before spending more than this (needs a known price: "
                                                    "see --price)")
    p.add_argument("--budget-tokens", type=int, metavar="N", help="stop before more than N tokens (prompt + "
                                                                  "output) are spent; works for any model")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--until-round", type=int, help="stop after this round (continue later with resume)")
    p.add_argument("--no-equal-judge", action="store_true", help="skip the LLM Equal/Not Equal question")
    p.add_argument("--dedup", action="store_true", help="drop near-duplicates (ROUGE-L > 0.7) during the run")
    p.add_argument("--quality-filter", type=float, metavar="MIN", help="drop answers rated under MIN (0-5)")
    p.add_argument("--rule-off", action="append", metavar="RULE", help="switch an elimination rule off")
    p.add_argument("--check-answers", action="store_true", help="answer kept items with a numeric answer k more "
                   "times at temperature 0.7 and mark them consistent / inconsistent / not checkable (k calls each)")
    p.add_argument("--check-k", type=int, default=3, metavar="K", help="samples per checked item (default 3)")
    p.add_argument("--template", action="append", metavar="OP=VERSION", help="use a stored template version for an "
                   "operation (a name or hash prefix; `tune --list` shows them); repeatable")
    add_batch_options(p, new_run=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue a stopped, killed or paused run without repeating stored calls")
    p.add_argument("--db", default=DEFAULT_DB)
    _add_warm_option(p)
    p.add_argument("--run", help="run id (default: the latest)")
    p.add_argument("--until-round", type=int)
    p.add_argument("--budget-usd", type=float, help="a new budget")
    p.add_argument("--budget-tokens", type=int, metavar="N", help="a new token budget")
    _add_price_options(p)
    add_batch_options(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("runs", help="list runs with counts by status and rule, tokens and cost")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--run", help="only this run (with --by-operation default: the latest)")
    p.add_argument("--by-operation", action="store_true", help="per operation: tried, kept share, eliminations by "
                   "rule, difficulty and complexity change with 95%% CIs, calls, tokens and cost per kept child")
    p.add_argument("--split", choices=["round", "language", "skill", "none"], default="round",
                   help="with --by-operation: one row per operation and round (default), language, skill, or none")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("export", help="write training data or the full lineage")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--run", help="run id (default: the latest)")
    p.add_argument("--format", required=True, choices=["alpaca", "sharegpt", "openai", "lineage"])
    p.add_argument("--out", required=True)
    p.add_argument("--status", choices=["kept", "all"], default="kept",
                   help="kept: seeds and kept evolutions with answers (default); all: every node")
    p.add_argument("--no-seeds", action="store_true", help="leave the round-0 seeds out")
    p.add_argument("--rules", help="with --status all: only eliminated nodes with these rules (comma list)")
    p.add_argument("--min-score", action="append", metavar="METRIC=VALUE", help="e.g. quality=4.5")
    p.add_argument("--checked", metavar="LIST", help="only items whose answer check is one of: consistent, "
                   "inconsistent, not_checkable, unchecked (comma list; see `check`)")
    p.add_argument("--consistent-only", action="store_true", help="only items whose answer check is consistent")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("check", help="checked answers: answer numeric items k more times and compare the numbers "
                       "(self-consistency)")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--run", help="run id (default: the latest)")
    p.add_argument("--k", type=int, default=3, help="samples per item (default 3); k calls per checkable item")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument("--tolerance", type=float, default=0.01, help="relative tolerance for equal numbers (default 0.01)")
    p.add_argument("--recheck", action="store_true", help="check items checked before again (samples come from "
                   "the cache when k and temperature are the same)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("judge", help="pairwise LLM judge: two rounds of a run, or two runs on the same seeds")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--run", help="run A (default: the latest)")
    p.add_argument("--rounds", help="compare two rounds of run A, e.g. 0,2 (A = the first)")
    p.add_argument("--against", metavar="RUN_ID", help="compare run A with this run on their shared seeds")
    p.add_argument("--base-url", help="judge endpoint (default: the run's own)")
    p.add_argument("--model", help="judge model (default: the run's own)")
    p.add_argument("--api-key-env", help="NAME of the variable holding the judge's key")
    p.add_argument("--scorers", metavar="NAME[,NAME]",
                   help="the scorers to run on every node, e.g. complexity,difficulty (default: "
                        f"{','.join(default_scorers())}); a plugin's scorer needs EVOLAB_PLUGINS or its package")
    p.add_argument("--structured", choices=["auto", "on", "off"], default=None,
                   help="JSON-schema replies from the judge (default: the run's setting)")
    p.set_defaults(func=cmd_judge)


    p = sub.add_parser("tune", help="tune an operation's template on a run's failures (Auto Evol-Instruct); list, "
                                    "adopt and compare template versions")
    add_tune_arguments(p, DEFAULT_DB)
    p.set_defaults(func=cmd_tune)


    add_embed_parser(sub, DEFAULT_DB)

    p = sub.add_parser("agreement", help="how often a person agreed with each rule and scorer on the Review "
                       "page's audit sample (95%% Wilson intervals)")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--run", help="run id, or several comma-separated (default: the latest)")
    p.set_defaults(func=cmd_agreement)

    p = sub.add_parser("report", help="one self-contained HTML report of a run")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--run", help="run id (default: the latest)")
    p.add_argument("--out", default="report.html")
    p.set_defaults(func=cmd_report)

    add_batch_commands(sub, DEFAULT_DB, _store, _run_id)  # batch cancel|export|import|status (evolab/cli/batch.py)
    return parser


def main(argv: list[str] | None = None) -> int:
    load_plugins()  # EVOLAB_PLUGINS and installed entry points: their operations, rules and scorers
    for error in plugin_errors():
        print(f"warning: {error}", file=sys.stderr)
    args = build_parser().parse_args(argv)
    if getattr(args, "port", "unset") is None:
        args.port = DEFAULT_PORT
    try:
        return int(args.func(args) or 0)
    except (BadInput, PluginError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # anything else: one line, status 1, no traceback unless asked
        if os.environ.get("EVOLAB_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
