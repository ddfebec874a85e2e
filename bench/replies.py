"""How well evolab reads free-text model replies: accuracy per reply kind and language on the corpus in
tests/data/replies/ (English and Korean), for the readers in evolab/text/replies.py and, for comparison, the
parsers evolab shipped before them (commit 92462f9, kept verbatim in bench/old_parsers.py).

"unreadable->value" counts replies a person cannot read (expected null, or an empty instruction) that the
reader turned into a value anyway: the worst error, since a made-up verdict or score enters the data.

Then the refusal detector (evolab.text.refusal.is_refusal) on tests/data/refusals/{en,ko}.jsonl, when present.

    .venv/bin/python bench/replies.py            # markdown tables, ready to paste into the README
    .venv/bin/python bench/replies.py --errors   # also every reply a reader got wrong
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolab.text import replies  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import old_parsers  # noqa: E402

DATA = ROOT / "tests" / "data"
# The corpus the readers were built on, and four held-out ones, each written by someone who never saw the
# code and measured before its misses were fixed (the README keeps those first, unseen figures); once fixed,
# every set is tuned too, and the next unseen measure needs a new set.
CORPORA = {"tuned": DATA / "replies", "held-out 1 (then fixed)": DATA / "replies_heldout",
           "held-out 2 (then fixed)": DATA / "replies_heldout2", "held-out 3 (then fixed)": DATA / "replies_heldout3",
           "held-out 4 (then fixed)": DATA / "replies_heldout4",
           "held-out 5": DATA / "replies_heldout5"}
REFUSAL_CORPORA = {"tuned": DATA / "refusals", "held-out 1 (then fixed)": DATA / "refusals_heldout",
                   "held-out 2 (then fixed)": DATA / "refusals_heldout2",
                   "held-out 3 (then fixed)": DATA / "refusals_heldout3",
                   "held-out 4 (then fixed)": DATA / "refusals_heldout4"}
KINDS = ["equality", "difficulty", "quality", "pairwise", "evolver"]


def load(kind: str, corpus: Path) -> list[dict]:
    path = corpus / f"{kind}.jsonl"
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _evolved(fn: Callable) -> Callable:
    def read(text):
        instruction, input_text = fn(text)
        return {"instruction": instruction, "input": input_text}
    return read


def _pair(fn: Callable) -> Callable:
    def read(text):
        value = fn(text)
        return None if value is None else list(value)
    return read


def _set(equal, score, pair, evolved) -> dict[str, Callable | None]:
    return {
        "equality": equal,
        "difficulty": score and (lambda t: score(t, 1, 10)),
        "quality": score and (lambda t: score(t, 0, 5)),
        "pairwise": pair and _pair(pair),
        "evolver": evolved and _evolved(evolved),
    }


def readers() -> dict[str, dict[str, Callable | None]]:
    """{reader set: {kind: reply -> value in the corpus's `expected` form}}."""
    return {
        "new (evolab.text.replies)": _set(replies.read_equal, replies.read_score, replies.read_pair_scores,
                                     replies.read_evolved),
        "old parsers (92462f9)": _set(old_parsers.parse_equal, old_parsers.parse_score, old_parsers.parse_scores,
                                      old_parsers.parse_evolved),
    }


def is_unreadable(kind: str, expected: Any) -> bool:
    return expected["instruction"] == "" if kind == "evolver" else expected is None


def same(expected: Any, got: Any) -> bool:
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return isinstance(got, (int, float)) and not isinstance(got, bool) and float(got) == float(expected)
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(same(e, g) for e, g in zip(expected, got))
    return expected == got


def evaluate(read: Callable, rows: list[dict], kind: str) -> tuple[int, int, list[tuple[dict, Any]]]:
    """(correct, unreadable replies turned into a value, [(row, got) for every miss])."""
    correct, invented, misses = 0, 0, []
    for row in rows:
        try:
            got = read(row["reply"])
        except Exception as e:  # noqa: BLE001 - a reader that raises got the reply wrong
            got = f"raised {type(e).__name__}: {e}"
        if same(row["expected"], got):
            correct += 1
            continue
        misses.append((row, got))
        if is_unreadable(kind, row["expected"]) and not (kind == "evolver" and isinstance(got, dict)
                                                         and got.get("instruction") == ""):
            invented += 1 if got is not None else 0
    return correct, invented, misses


def reply_table(show_errors: bool) -> None:
    print("## Reading free-text replies\n")
    print("| corpus | reader | kind | lang | n | correct | accuracy | unreadable->value |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    errors = []
    for corpus_name, corpus in CORPORA.items():
        for reader_name, kinds in readers().items():
            for kind in KINDS:
                read = kinds[kind]
                rows = load(kind, corpus)
                for lang in ("en", "ko"):
                    subset = [r for r in rows if r["lang"] == lang]
                    if not subset:
                        continue
                    correct, invented, misses = evaluate(read, subset, kind)
                    print(f"| {corpus_name} | {reader_name} | {kind} | {lang} | {len(subset)} | {correct} | "
                          f"{correct / len(subset):.1%} | {invented} |")
                    errors += [(f"{corpus_name}/{reader_name}", kind, lang, row, got) for row, got in misses]
    if show_errors:
        print("\n### Misses\n")
        for reader_name, kind, lang, row, got in errors:
            print(f"- [{reader_name}] {kind}/{lang}: expected {row['expected']!r}, got {got!r}\n"
                  f"  reply: {row['reply'][:160]!r}  ({row['note']})")


def refusal_table() -> None:
    from evolab.text.refusal import is_refusal

    print("\n## Refusal detection (evolab.text.refusal.is_refusal)\n")
    print("| corpus | lang | answers | refusals | false positives | recall |")
    print("|---|---|---:|---:|---:|---:|")
    for corpus_name, corpus in REFUSAL_CORPORA.items():
        for lang in ("en", "ko"):
            path = corpus / f"{lang}.jsonl"
            if not path.exists():
                continue
            with open(path, encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
            answers = [r for r in rows if not r["refusal"]]
            refusals = [r for r in rows if r["refusal"]]
            false_positives = sum(1 for r in answers if is_refusal(r["text"], lang)[0])
            caught = sum(1 for r in refusals if is_refusal(r["text"], lang)[0])
            recall = f"{caught / len(refusals):.1%}" if refusals else "-"
            print(f"| {corpus_name} | {lang} | {len(answers)} | {len(refusals)} | {false_positives} | {recall} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--errors", action="store_true", help="list every reply a reader got wrong")
    args = parser.parse_args()
    reply_table(args.errors)
    refusal_table()


if __name__ == "__main__":
    main()
