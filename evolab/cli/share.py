"""Taking results elsewhere: `export --to-hub` and `export --card` (the Hub and the dataset card), `figures` (every
figure as a file) and `slides` (a deck), over evolab/export/hub.py, card.py, figures.py and slides.py."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evolab.cli.common import DEFAULT_DB, BadInput, check_out_path, open_store, pick_run_id
from evolab.export import figures, slides
from evolab.export.card import dataset_card, license_problem, write_card
from evolab.export.formats import FORMATS, write_export
from evolab.export.hub import DEFAULT_TOKEN_ENV, HubError, push_run, read_token, repo_id_problem
from evolab.llm.base import redact_url
from evolab.store import Store


def add_export_destinations(p: argparse.ArgumentParser) -> None:
    """The export command's destinations besides --out: the Hub and a card file."""
    p.add_argument("--to-hub", metavar="OWNER/NAME", help="push the format(s) and a dataset card to this dataset "
                   "repository on the Hugging Face Hub (HF_ENDPOINT names another Hub), in one commit")
    p.add_argument("--private", action="store_true", help="with --to-hub: create the repository private")
    p.add_argument("--revision", metavar="BRANCH", help="with --to-hub: push to this branch (created from main)")
    p.add_argument("--token-env", default=DEFAULT_TOKEN_ENV, metavar="NAME", help="with --to-hub: the environment "
                   f"variable holding the Hub token (default {DEFAULT_TOKEN_ENV}); never stored or shown")
    p.add_argument("--license", help="the data's license id for the card, e.g. apache-2.0, cc-by-4.0, other")
    p.add_argument("--card", metavar="PATH", help="also write the dataset card (README.md with the Hub's metadata)")


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in (text or "").split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise BadInput(f"--format {text!r}: choose from {', '.join(FORMATS)} (a comma list with --to-hub or --card).")
    return list(dict.fromkeys(formats))


def check_destinations(args: argparse.Namespace, formats: list[str]) -> str | None:
    """Every destination checked before anything is written or sent; returns the Hub token (None without --to-hub)."""
    if not (args.out or args.to_hub or args.card):
        raise BadInput("Say where the data goes: --out FILE, --to-hub OWNER/NAME or --card PATH.")
    if args.out and len(formats) > 1:
        raise BadInput(f"--out writes one format; got {','.join(formats)}. Use --to-hub for several.")
    for option, used in (("--private", args.private), ("--revision", args.revision)):
        if used and not args.to_hub:
            raise BadInput(f"{option} goes with --to-hub OWNER/NAME.")
    problem = license_problem(args.license)
    if problem:
        raise BadInput(problem)
    if args.out:
        check_out_path(args.out)
    if args.card:
        check_out_path(args.card, "--card")
    if not args.to_hub:
        return None
    problem = repo_id_problem(args.to_hub)
    if problem:
        raise BadInput(problem)
    try:
        return read_token(args.token_env)
    except HubError as e:
        raise BadInput(str(e)) from None


def export_elsewhere(args: argparse.Namespace, store: Store, run_id: str, select: dict, formats: list[str],
                     token: str | None) -> int:
    """The export command after its checks: --out, then --card, then --to-hub."""
    counts = {}
    if args.out:
        counts[formats[0]] = write_export(store, run_id, formats[0], args.out, **select)  # streamed: bounded memory
        print(f"wrote {counts[formats[0]]} records ({formats[0]}) to {args.out}")
    if args.card:
        card_dir = Path(args.card).resolve().parent
        files = ({formats[0]: Path(args.out).resolve().relative_to(card_dir).as_posix()}
                 if args.out and Path(args.out).resolve().is_relative_to(card_dir) else None)
        card = dataset_card(store, run_id, formats, files=files, counts=counts or None, license=args.license,
                            repo_id=args.to_hub, select=select)
        write_card(card, args.card)
        print(f"wrote the dataset card to {args.card}")
    if args.to_hub:
        try:
            result = push_run(store, run_id, args.to_hub, token=token, formats=formats, select=select,
                              private=args.private, revision=args.revision, license=args.license,
                              progress=lambda msg: print(msg, file=sys.stderr))
        except HubError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"pushed {', '.join(result.files)} to {redact_url(result.url)} (branch {result.revision}, "
              f"commit {(result.commit or '')[:12]})")
    return 0


# -- figures and slides ----------------------------------------------------------------------------------------
def cmd_figures(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    run_id = pick_run_id(store, args.run)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {args.out} is a file; give a folder (it is created when missing).")
    if not out.parent.is_dir():
        raise BadInput(f"--out {args.out}: the folder {out.parent} does not exist; create it first.")
    seeds = _seed_list(args.seeds)
    try:
        written = figures.write_figures(store, run_id, out, fmt=args.format, seeds=seeds, against=args.against,
                                        progress=lambda msg: print(msg, file=sys.stderr))
    except figures.FigureError as e:
        raise BadInput(str(e)) from None
    for path in written:
        print(path)
    print(f"wrote {len(written)} figures ({args.format}) to {out}", file=sys.stderr)
    return 0


def cmd_slides(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    run_id = pick_run_id(store, args.run)
    if not args.out.endswith(".pptx"):
        raise BadInput(f"--out {args.out}: a deck is a .pptx file, e.g. deck.pptx.")
    check_out_path(args.out)
    try:
        path = slides.write_deck(store, run_id, args.out, seed=args.seed,
                                 progress=lambda msg: print(msg, file=sys.stderr))
    except figures.FigureError as e:
        raise BadInput(str(e)) from None
    print(f"wrote {path}")
    return 0


def _seed_list(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def add_share_commands(sub: argparse._SubParsersAction) -> None:
    """`figures` and `slides`."""
    p = sub.add_parser("figures", help="write every figure of the Drift, Diversity, Lineage and Compare pages as "
                                       "files sized for 16:9 slides (plotly + kaleido, through Chromium)")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--run", help="run id (default: the latest)")
    p.add_argument("--out", required=True, help="folder for the files (created when missing)")
    p.add_argument("--format", choices=figures.IMAGE_FORMATS, default="png")
    p.add_argument("--seeds", metavar="ID[,ID]", help="seed node ids whose lineage trees to draw (default: the "
                   f"{figures.DEFAULT_TREES} seeds with the most descendants)")
    p.add_argument("--against", metavar="RUN_ID", help="also the Compare figures against this run (default: the "
                   "run's first and last round)")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("slides", help="a slide deck (.pptx) of the run: seeds, evolution per round and operation, "
                                      "eliminations, drift, diversity, one lineage, judge and checked answers, cost")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--run", help="run id (default: the latest)")
    p.add_argument("--out", required=True, help="the .pptx file")
    p.add_argument("--seed", metavar="ID", help="the seed whose lineage is told step by step (default: the deepest)")
    p.set_defaults(func=cmd_slides)
