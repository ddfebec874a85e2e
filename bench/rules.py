"""The language_drift and off_topic rules (evolab/engine/drift_rules.py), measured.

1. language_drift on the reply corpora: every rewrite the reading corpora expect (tests/data/replies*/evolver.jsonl)
   and every answer of the refusal corpora (tests/data/refusals*/{en,ko}.jsonl), each labelled with its language.
   Asked for its own language, a text flagged is a false positive; asked for the other one, a text flagged is a
   catch (recall). Korean texts that carry Latin letters or digits (English terms, tickers, numbers) are counted
   apart: they must stay Korean.
2. A stub run (the scripted fake model, no network) over evolab/data/finance.jsonl (22 English and 22 Korean seeds),
   2 rounds, whose evolver, for each child, deterministically either cooperates (rewrites in the seed's language,
   on topic), or returns the instruction in the other language, or answers in the other language, or writes an
   instruction on an unrelated subject, or returns issue 23's English paragraph ("a game-changer for the gaming
   industry in China"). Per seed language and kind: how many children the two rules stop (recall), and how many
   cooperative children they stop (false positives).
The off_topic cuts themselves are measured by bench/embeddings.py --off-topic (tuning and held-out pairs).

    .venv/bin/python bench/rules.py            # both tables
    .venv/bin/python bench/rules.py --errors   # also every text the language check got wrong
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolab.engine import pipeline  # noqa: E402
from evolab.engine.drift_rules import language_verdict  # noqa: E402
from evolab.llm.fake import FakeBackend, given_prompt, scripted_reply  # noqa: E402
from evolab.schema import RunConfig  # noqa: E402
from evolab.seeds.files import load_seeds  # noqa: E402
from evolab.store import Store  # noqa: E402

DATA = ROOT / "tests" / "data"
OTHER = {"en": "ko", "ko": "en"}


def corpus_texts() -> list[tuple[str, str, str]]:
    """(source, language, text) for every labelled text of the reply and refusal corpora."""
    out = []
    for folder in sorted(DATA.glob("replies*")):
        path = folder / "evolver.jsonl"
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line) if line.strip() else None
                if row and row["expected"]["instruction"]:
                    out.append((f"{folder.name}/evolver (rewrites)", row["lang"], row["expected"]["instruction"]))
    for folder in sorted(DATA.glob("refusals*")):
        for lang in ("en", "ko"):
            path = folder / f"{lang}.jsonl"
            if path.exists():
                out += [(f"{folder.name} (answers)", lang, json.loads(line)["text"])
                        for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def mixed(text: str) -> bool:
    return bool(re.search(r"[A-Za-z0-9]", text))


def language_table(show_errors: bool) -> None:
    texts = corpus_texts()
    print("## language_drift on the reply corpora\n")
    print("| texts | language | n | flagged when asked for their own language (false positives) | "
          "flagged when asked for the other (recall) |")
    print("|---|---|---:|---:|---:|")
    errors = []
    groups = {"rewrites": lambda s: "evolver" in s, "answers": lambda s: "answers" in s}
    for name, match in groups.items():
        for lang in ("en", "ko"):
            for subset, pick in (("all", lambda t: True), ("with Latin letters or digits", mixed)):
                if lang == "en" and subset != "all":
                    continue
                rows = [(s, t) for s, lg, t in texts if lg == lang and match(s) and pick(t)]
                if not rows:
                    continue
                what = "answer" if name == "answers" else "instruction"
                fp = [(s, t) for s, t in rows if not language_verdict(t, lang, what).passed]
                caught = [(s, t) for s, t in rows if not language_verdict(t, OTHER[lang], what).passed]
                label = f"{lang}" + ("" if subset == "all" else f" ({subset})")
                print(f"| {name} | {label} | {len(rows)} | {len(fp)} ({len(fp) / len(rows):.1%}) | "
                      f"{len(caught)} ({len(caught) / len(rows):.1%}) |")
                if subset == "all":
                    errors += [("false positive", lang, s, t) for s, t in fp]
                    errors += [("missed", OTHER[lang], s, t) for s, t in rows if (s, t) not in caught]
    if show_errors:
        print("\n### Misses\n")
        for kind, wanted, source, text in errors:
            print(f"- {kind} (run asks {wanted}) [{source}]: {text[:160]!r}")


# -- the stub run -------------------------------------------------------------------------------------------------
ISSUE_PARAGRAPH = ("It's a game-changer for the gaming industry in China, where mobile titles now earn more than "
                   "console games and studios race to build their own engines.")
OFF_TOPIC = {
    "en": ["Write a haiku about autumn leaves falling into a mountain stream.",
           "Give a recipe for a vegetarian lasagna for six people.",
           "Describe the rules of chess for a complete beginner.",
           "Suggest a seven-day itinerary for a first trip to Japan in cherry blossom season.",
           "Explain how photosynthesis converts light energy into chemical energy."],
    "ko": ["가을 단풍을 주제로 한 짧은 시를 써 주세요.", "6인분 채식 라자냐 레시피를 알려 주세요.",
           "체스의 기본 규칙을 초보자에게 설명하세요.", "벚꽃 시즌 일본 첫 여행 일정을 7일로 짜 주세요.",
           "광합성이 빛 에너지를 화학 에너지로 바꾸는 과정을 설명하세요."],
}
OTHER_LANGUAGE_CHILD = {  # the seed's task, asked in the other language (what an English-centric model does)
    "en": "이 개념을 초보 투자자를 위해 숫자 예시와 함께 단계별로 설명하고, 흔한 실수 두 가지를 짚어 주세요.",
    "ko": "Explain this concept step by step for a beginner investor, with a numeric example and two common mistakes.",
}
OTHER_LANGUAGE_ANSWER = {
    "en": "자세한 답변입니다. 먼저 핵심 개념을 정리하고, 숫자 예시로 계산 과정을 보여 드리겠습니다. 요약하면 상황에 따라 다릅니다.",
    "ko": "Here is a careful answer. First, the key idea; then a worked numeric example. In summary, it depends.",
}
KINDS = ["cooperative", "instruction in the other language", "answer in the other language", "off topic",
         "issue 23's paragraph"]
EXPECTED = {"cooperative": None, "instruction in the other language": "language_drift",
            "answer in the other language": "language_drift", "off topic": "off_topic",
            "issue 23's paragraph": ("language_drift", "off_topic")}


def _korean(text: str) -> bool:
    return bool(re.search("[가-힣]", text))


class DriftingModel:
    """The scripted fake, drifting on purpose: which child a prompt gets is fixed by its hash."""

    def __init__(self):
        self.kind_of: dict[str, str] = {}  # child instruction -> kind
        self.answer_in_other: set[str] = set()

    def __call__(self, messages, purpose):
        text = messages[-1]["content"]
        h = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)
        if purpose == "evolve":
            given = given_prompt(messages).split("\n#Input#")[0].strip()
            lang = "ko" if _korean(given) else "en"
            kind = KINDS[[0, 0, 0, 1, 2, 3, 4][h % 7]]  # about 3 in 7 cooperate
            header = "#Created Prompt#" if "#Created Prompt#" in text else "#Rewritten Prompt#"
            if kind in ("cooperative", "answer in the other language"):
                child = scripted_reply(messages, purpose).split(":\n", 1)[1]
            elif kind == "instruction in the other language":
                child = OTHER_LANGUAGE_CHILD[lang]
            elif kind == "off topic":
                child = OFF_TOPIC[lang][(h >> 8) % len(OFF_TOPIC[lang])]
            else:
                child = ISSUE_PARAGRAPH if lang == "ko" else "중국 게임 산업의 판도를 바꾼 사건으로, 모바일 게임 매출이 콘솔을 넘어섰다."
            self.kind_of.setdefault(child, kind)
            if kind == "answer in the other language":
                self.answer_in_other.add(child)
            return f"{header}:\n{child}"
        if purpose == "respond":
            child = next((c for c in self.answer_in_other if c in text), None)
            if child is not None:
                return OTHER_LANGUAGE_ANSWER["ko" if _korean(child) else "en"]
        return scripted_reply(messages, purpose)


def stub_run_table() -> None:
    seeds = load_seeds(ROOT / "evolab" / "data" / "finance.jsonl")
    model = DriftingModel()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "rules.db")
        config = RunConfig(model="fake", base_url="http://fake", rounds=2, concurrency=8, random_seed=1)
        run_id = pipeline.create_run(store, seeds, config)
        status = pipeline.run_sync(store, run_id, backend=FakeBackend(handler=model))
        nodes = [n for n in store.nodes(run_id) if n.round > 0]
        store.close()
    table: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for n in nodes:
        kind = model.kind_of.get(n.instruction, "cooperative")
        table[(n.language, kind)]["n"] += 1
        table[(n.language, kind)][n.rule or "kept"] += 1
    print(f"\n## A stub run with drifting children (finance.jsonl, 2 rounds, run {status})\n")
    print("| seed language | child | n | stopped by language_drift | stopped by off_topic | kept | "
          "stopped earlier by another rule | caught (recall) or false positives |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for lang in ("en", "ko"):
        for kind in KINDS:
            c = table.get((lang, kind))
            if not c:
                continue
            drift, off, kept = c["language_drift"], c["off_topic"], c["kept"]
            other = c["n"] - drift - off - kept
            if kind == "cooperative":
                figure = f"false positives {drift + off} ({(drift + off) / c['n']:.0%})"
            else:
                want = EXPECTED[kind]
                hit = sum(c[r] for r in ((want,) if isinstance(want, str) else want))
                reached = c["n"] - other  # a child another rule stopped first never reached these two
                figure = f"recall {hit}/{reached} ({hit / reached:.0%})" if reached else "-"
            print(f"| {lang} | {kind} | {c['n']} | {drift} | {off} | {kept} | {other} | {figure} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--errors", action="store_true", help="list every text the language check got wrong")
    args = parser.parse_args()
    language_table(args.errors)
    stub_run_table()


if __name__ == "__main__":
    main()
