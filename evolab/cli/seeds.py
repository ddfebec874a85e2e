"""Seed files: `seeds check`, `seeds lint`, `seeds grow`, and reading a seed file for `run`."""
from __future__ import annotations

import argparse
import json

from evolab.cli.common import BadInput, check_out_path, load_seed_file, open_store
from evolab.cli.runs import config_from_args, require_price_for_budget
from evolab.seeds.craft import GrowSpec, SeedcraftError, check_spec, grow_cli
from evolab.seeds.files import format_summary, summarize
from evolab.seeds.lint import format_report, lint_seeds


def cmd_seeds_check(args: argparse.Namespace) -> int:
    seeds = load_seed_file(args.file, args.map)
    print(f"{args.file}: OK")
    print(format_summary(summarize(seeds)))
    return 0


def cmd_seeds_lint(args: argparse.Namespace) -> int:
    report = lint_seeds(load_seed_file(args.file, args.map), use_embeddings=not args.no_embed)
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1) if args.json else format_report(report, args.file))
    return 1 if report.findings else 0


def cmd_seeds_grow(args: argparse.Namespace) -> int:
    """Grow a seed set Self-Instruct's way (evolab.seeds.craft); re-running the same command resumes the job."""

    check_out_path(args.out)  # before any call: a folder that is not there fails now, not after paying
    seeds = load_seed_file(args.seeds)
    config = config_from_args(args)
    require_price_for_budget(config)
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
    store = open_store(args.db, must_exist=False)
    return grow_cli(store, config, spec, out=args.out, max_calls=args.max_calls)


