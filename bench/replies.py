"""How well evolab reads free-text model replies: accuracy per reply kind and language on the corpus in
tests/data/replies/ (English and Korean), for the readers in evolab/replies.py and, for comparison, the
older parsers (scoring.parse_score, eliminator.parse_equal, judge.parse_scores, evolver.parse_evolved):
both as those modules have them now (they may delegate to evolab.replies) and as they were in git before
evolab/replies.py was added.

"unreadable->value" counts replies a person cannot read (expected null, or an empty instruction) that the
reader turned into a value anyway: the worst error, since a made-up verdict or score enters the data.

Then the refusal detector (evolab.refusal.is_refusal) on tests/data/refusals/{en,ko}.jsonl, when present.

    .venv/bin/python bench/replies.py            # markdown tables, ready to paste into the README
    .venv/bin/python bench/replies.py --errors   # also every reply a reader got wrong
"""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolab import replies  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "replies"
REFUSALS = ROOT / "tests" / "data" / "refusals"
KINDS = ["equality", "difficulty", "quality", "pairwise", "evolver"]


def load(kind: str) -> list[dict]:
    with open(CORPUS / f"{kind}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _old(module: str, name: str) -> Callable | None:
    """A parser as the module has it now, imported defensively: it may have moved, or now delegate to
    evolab.replies (then this row shows the wrapper)."""
    try:
        return getattr(importlib.import_module(module), name)
    except Exception:  # noqa: BLE001 - any import problem just drops the comparison row
        return None


def baseline_commit() -> str | None:
    """The last commit before evolab/replies.py was added (HEAD while it is not committed yet)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        added = git("log", "--diff-filter=A", "--format=%H", "--", "evolab/replies.py").splitlines()
        return git("rev-parse", f"{added[-1]}^" if added else "HEAD")
    except (OSError, subprocess.CalledProcessError, IndexError):
        return None


def _baseline(commit: str | None, module: str, name: str) -> Callable | None:
    """The parser as it was at `commit`, before the readers existed: its module's top-level statements
    from git, run one by one, skipping the package's own imports and whatever no longer runs (the parsers
    need only the standard library and their module's regexes and helpers)."""
    if commit is None:
        return None
    path = module.replace(".", "/") + ".py"
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], capture_output=True,
                                text=True, check=True).stdout
        namespace: dict[str, Any] = {"__name__": f"evolab_baseline_{module.rsplit('.', 1)[-1]}"}
        for node in ast.parse(source).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                continue
            try:
                exec(compile(ast.Module([node], []), f"{commit[:7]}:{path}", "exec"), namespace)  # noqa: S102
            except Exception:  # noqa: BLE001 - e.g. a dataclass over a type that moved
                continue
        return namespace[name]
    except Exception:  # noqa: BLE001 - no git, no such file or function
        return None


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


OLD = [("evolab.eliminator", "parse_equal"), ("evolab.scoring", "parse_score"), ("evolab.judge", "parse_scores"),
       ("evolab.evolver", "parse_evolved")]


def readers() -> dict[str, dict[str, Callable | None]]:
    """{reader set: {kind: reply -> value in the corpus's `expected` form}}."""
    commit = baseline_commit()
    return {
        "new (evolab.replies)": _set(replies.read_equal, replies.read_score, replies.read_pair_scores,
                                     replies.read_evolved),
        "old parse_* now": _set(*(_old(module, name) for module, name in OLD)),
        f"old parse_* at {commit[:7] if commit else '?'}": _set(*(_baseline(commit, module, name)
                                                                  for module, name in OLD)),
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
    print("| reader | kind | lang | n | correct | accuracy | unreadable->value |")
    print("|---|---|---|---:|---:|---:|---:|")
    errors = []
    for reader_name, kinds in readers().items():
        for kind in KINDS:
            read = kinds[kind]
            rows = load(kind)
            for lang in ("en", "ko"):
                subset = [r for r in rows if r["lang"] == lang]
                if read is None:
                    print(f"| {reader_name} | {kind} | {lang} | {len(subset)} | - | not importable | - |")
                    continue
                correct, invented, misses = evaluate(read, subset, kind)
                print(f"| {reader_name} | {kind} | {lang} | {len(subset)} | {correct} | "
                      f"{correct / len(subset):.1%} | {invented} |")
                errors += [(reader_name, kind, lang, row, got) for row, got in misses]
    if show_errors:
        print("\n### Misses\n")
        for reader_name, kind, lang, row, got in errors:
            print(f"- [{reader_name}] {kind}/{lang}: expected {row['expected']!r}, got {got!r}\n"
                  f"  reply: {row['reply'][:160]!r}  ({row['note']})")


def refusal_table() -> None:
    print("\n## Refusal detection (evolab.refusal.is_refusal)\n")
    files = [REFUSALS / f"{lang}.jsonl" for lang in ("en", "ko")]
    try:
        from evolab.refusal import is_refusal
    except Exception as e:  # noqa: BLE001 - the module is being written by a colleague
        print(f"skipped: evolab.refusal.is_refusal is not importable ({type(e).__name__}: {e})")
        return
    if not any(f.exists() for f in files):
        print(f"skipped: no corpus at {REFUSALS.relative_to(ROOT)}/{{en,ko}}.jsonl yet")
        return
    print("| lang | answers | refusals | false positives | recall |")
    print("|---|---:|---:|---:|---:|")
    for lang, path in zip(("en", "ko"), files):
        if not path.exists():
            print(f"| {lang} | - | - | - | no {path.name} |")
            continue
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        answers = [r for r in rows if not r["refusal"]]
        refusals = [r for r in rows if r["refusal"]]
        false_positives = sum(1 for r in answers if is_refusal(r["text"], lang)[0])
        caught = sum(1 for r in refusals if is_refusal(r["text"], lang)[0])
        recall = f"{caught / len(refusals):.1%}" if refusals else "-"
        print(f"| {lang} | {len(answers)} | {len(refusals)} | {false_positives} | {recall} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--errors", action="store_true", help="list every reply a reader got wrong")
    args = parser.parse_args()
    reply_table(args.errors)
    refusal_table()


if __name__ == "__main__":
    main()
