"""Reading final numbers (evolab/engine/checking.py) on a corpus of answers: how many are read right, wrong, or not at all.

    .venv/bin/python bench/checking.py tests/data/checking/heldout.jsonl

Each line: {"text", "expected", "percent", "language"}. A reading is right when its value equals `expected`
(relative 1e-9) and it is a percentage exactly when `percent` says so."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolab.engine.checking import extract_final_number  # noqa: E402


def main(path: str) -> int:
    items = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    tally: dict[str, dict[str, int]] = {}
    for it in items:
        r = extract_final_number(it["text"], it["language"])
        if r.value is None:
            outcome = "not read"
        elif math.isclose(r.value, it["expected"], rel_tol=1e-9) and r.percent == bool(it.get("percent")):
            outcome = "right"
        else:
            outcome = "wrong"
        tally.setdefault(it["language"], {"right": 0, "wrong": 0, "not read": 0})[outcome] += 1
        if outcome != "right":
            print(f"{outcome:8} [{it['language']}] expected {it['expected']}, got {r.describe()}")
    for lang, t in sorted(tally.items()):
        n = sum(t.values())
        print(f"{lang}: {t['right']}/{n} right, {t['wrong']} wrong, {t['not read']} not read")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/checking/heldout.jsonl"))
