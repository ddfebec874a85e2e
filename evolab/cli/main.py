"""python -m evolab: the headless CLI over the same engine and store as the app.

Exit status: 0 success, 2 bad input (a message names the problem), 130 interrupted (Ctrl-C; resumable),
1 anything else.
Heavy optional libraries (torch, sentence-transformers, umap) load inside the commands that need them, so
`--help` starts fast.
"""
from __future__ import annotations

import argparse
import os
import sys

from evolab.cli.batch import add_batch_commands, add_batch_options
from evolab.cli.common import DEFAULT_DB, BadInput, add_map_option
from evolab.cli.embed import add_embed_parser
from evolab.cli.results import cmd_agreement, cmd_check, cmd_export, cmd_judge, cmd_report
from evolab.cli.runs import (
    add_lease_options,
    add_price_options,
    add_run_options,
    add_warm_option,
    cmd_estimate,
    cmd_resume,
    cmd_run,
    cmd_runs,
    cmd_serve_local,
)
from evolab.cli.select import add_select_parser
from evolab.cli.share import add_export_destinations, add_share_commands
from evolab.cli.seeds import cmd_seeds_check, cmd_seeds_grow, cmd_seeds_lint
from evolab.cli.tune import add_tune_arguments, cmd_tune
from evolab.engine.lease import LeaseError
from evolab.engine.plugins import PluginError, load_plugins, plugin_errors
from evolab.engine.scoring import default_scorers
from evolab.llm.local import DEFAULT_PORT


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
    add_map_option(p)
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
    add_price_options(p)
    p.set_defaults(func=cmd_seeds_grow, rounds=1, fanout=1, ops=None, concurrency=1)
    p = seeds.add_parser("lint", help="rows to fix before a run (length, duplicates, mixed languages, missing tags, "
                                      "not a task); exit 1 when there are any")
    p.add_argument("file")
    add_map_option(p)
    p.add_argument("--no-embed", action="store_true", help="skip embedding near-duplicates (no model is loaded)")
    p.add_argument("--json", action="store_true", help="the findings as JSON")
    p.set_defaults(func=cmd_seeds_lint)

    p = sub.add_parser("estimate", help="calls, tokens and cost of a run, as a low / expected / high range")
    p.add_argument("seeds")
    add_map_option(p)
    add_run_options(p, endpoint=False)
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("run", help="evolve a seed file")
    p.add_argument("seeds", nargs="?", help="a seed file (or use --seed-set)")
    add_warm_option(p)
    add_map_option(p)
    p.add_argument("--seed-set", metavar="NAME", help="a seed set saved in the store; the run records its version")
    p.add_argument("--seed-set-version", type=int, metavar="N", help="that set's version N (default: the latest)")
    p.add_argument("--db", default=DEFAULT_DB, help=f"the store (default {DEFAULT_DB})")
    add_run_options(p)
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
    add_warm_option(p)
    p.add_argument("--run", help="run id (default: the latest)")
    p.add_argument("--until-round", type=int)
    p.add_argument("--budget-usd", type=float, help="a new budget")
    p.add_argument("--budget-tokens", type=int, metavar="N", help="a new token budget")
    add_price_options(p)
    add_batch_options(p)
    add_lease_options(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("runs", help="list runs with counts by status and rule, tokens and cost")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--run", help="only this run (with --by-operation default: the latest)")
    p.add_argument("--by-operation", action="store_true", help="per operation: tried, kept share, eliminations by "
                   "rule, difficulty and complexity change with 95%% CIs, calls, tokens and cost per kept child")
    p.add_argument("--split", choices=["round", "language", "skill", "none"], default="round",
                   help="with --by-operation: one row per operation and round (default), language, skill, or none")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("export", help="write training data or the full lineage; push it to the Hugging Face Hub")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--run", help="run id (default: the latest)")
    p.add_argument("--format", required=True, metavar="FORMAT", help="alpaca, sharegpt, openai or lineage (a comma "
                   "list with --to-hub or --card)")
    p.add_argument("--out", help="the file to write")
    add_export_destinations(p)  # --to-hub, --private, --revision, --token-env, --license, --card (cli/share.py)
    p.add_argument("--status", choices=["kept", "all"], default="kept",
                   help="kept: seeds and kept evolutions with answers (default); all: every node")
    p.add_argument("--no-seeds", action="store_true", help="leave the round-0 seeds out")
    p.add_argument("--rules", help="with --status all: only eliminated nodes with these rules (comma list)")
    p.add_argument("--min-score", action="append", metavar="METRIC=VALUE", help="e.g. quality=4.5")
    p.add_argument("--checked", metavar="LIST", help="only items whose answer check is one of: consistent, "
                   "inconsistent, not_checkable, unchecked (comma list; see `check`)")
    p.add_argument("--consistent-only", action="store_true", help="only items whose answer check is consistent")
    p.set_defaults(func=cmd_export)

    add_select_parser(sub, DEFAULT_DB)  # select: the best N kept nodes, Deita (evolab/cli/select.py)

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

    add_share_commands(sub)  # figures, slides (evolab/cli/share.py)
    add_batch_commands(sub)  # batch cancel|export|import|status (evolab/cli/batch.py)
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
    except (BadInput, PluginError, LeaseError) as e:  # LeaseError: another engine runs the run (named)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # anything else: one line, status 1, no traceback unless asked
        if os.environ.get("EVOLAB_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
