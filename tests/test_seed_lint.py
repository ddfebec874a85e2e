"""Seed lint on crafted files: every finding kind in English and in Korean, what must not be flagged (Korean with
English terms, real tasks), the fixes, and `python -m evolab seeds lint` (exit 1 with findings, 0 clean, 2
unreadable, --json, --map)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evolab.cli import main as cli
from evolab.embeddings import embed
from evolab.schema import Seed
from evolab.seeds.files import load_seeds
from evolab.seeds.lint import KINDS, Finding, apply_fix, lint_seeds

ROOT = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def tagged(instruction: str, **extra) -> dict:
    return {"instruction": instruction, "skill": "finance", "difficulty": 3, **extra}


def kinds_by_row(report) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for f in report.findings:
        out.setdefault(f.row, set()).add(f.kind)
    return out


def words(n: int, prefix: str) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def syllables(n: int, start: int) -> str:
    return "".join(chr(0xAC00 + start + i) for i in range(n))


def lint_file(path: Path, **kw):
    return lint_seeds(load_seeds(path), use_embeddings=False, **kw)


# -- each kind, English and Korean ----------------------------------------------------------------------------

def test_too_short_and_too_long_use_per_language_units(tmp_path):
    rows = [tagged("Explain."), tagged("요약"), tagged("Explain NPV."), tagged("NPV를 설명하세요."),
            tagged("Summarize.", input="A long passage about bonds and rates."),  # short, but the input is the task
            tagged(words(401, "a")), tagged(syllables(1001, 0)),
            tagged(words(399, "b")), tagged(syllables(990, 5000))]  # under the bounds: Korean may be longer
    found = kinds_by_row(lint_file(write_jsonl(tmp_path / "len.jsonl", rows)))
    assert found == {1: {"too_short"}, 2: {"too_short"}, 6: {"too_long"}, 7: {"too_long"}}
    report = lint_file(tmp_path / "len.jsonl")
    assert "for ko" in next(f.message for f in report.findings if f.row == 2)
    assert all(f.fixes == ("drop",) for f in report.findings)


def test_exact_duplicates_ignore_case_spacing_and_invisible_characters(tmp_path):
    rows = [tagged("Explain what a bond is."), tagged("  explain what a BOND  is.\u200b"),
            tagged("채권이란 무엇인지 설명하세요."), tagged("채권이란  무엇인지 설명하세요."),
            tagged("Explain what a bond is.", input="Treasury bonds")]  # another input: a different task
    report = lint_file(write_jsonl(tmp_path / "dup.jsonl", rows))
    dups = [(f.row, f.other_row) for f in report.findings if f.kind == "duplicate"]
    assert dups == [(2, 1), (4, 3)]
    assert next(f for f in report.findings if f.row == 2).fixes[0] == "merge"


def test_near_duplicates_by_rouge_l_over_0_7(tmp_path):
    rows = [tagged("Explain the difference between a stock and a bond for a new investor."),
            tagged("Explain the difference between a stock and a bond for a beginner investor."),
            tagged("Write a short poem about autumn leaves."),
            tagged("주식과 채권의 차이를 초보 투자자에게 설명하세요."),
            tagged("주식과 채권의 차이를 신입 투자자에게 설명하세요."),
            tagged("금리가 오르면 채권 가격이 왜 떨어지는지 설명하세요.")]
    report = lint_file(write_jsonl(tmp_path / "rouge.jsonl", rows))
    near = {f.row: f for f in report.findings if f.kind == "near_duplicate_rouge"}
    assert set(near) == {2, 5}
    assert near[2].other_row == 1 and near[5].other_row == 4
    assert all(f.score > 0.7 for f in near.values())


class TableEmbedder:
    """Vectors chosen per text, so the cosine of each pair is known exactly."""

    name = "test-table-embedder"

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = vectors

    def encode(self, texts):
        return embed.normalise_rows(np.array([self.vectors[t] for t in texts], dtype=np.float32))


def test_near_duplicates_by_embedding_ask_the_models_threshold(tmp_path, monkeypatch):
    texts = ["What distinguishes stocks from bonds?", "How do shares differ from fixed income?",
             "주식과 채권은 어떻게 다른가요?", "Write a poem about the sea."]
    # rows 2 and 3 at cosine 0.85 and 0.75 to row 1 (and 0.64 to each other), row 4 orthogonal to all
    vectors = {texts[0]: [1, 0, 0, 0], texts[1]: [0.85, np.sqrt(1 - 0.85 ** 2), 0, 0],
               texts[2]: [0.75, 0, np.sqrt(1 - 0.75 ** 2), 0], texts[3]: [0, 0, 0, 1]}
    asked = []

    def threshold(embedder, store=None):
        asked.append(embedder.name)
        return 0.8

    monkeypatch.setattr(embed, "near_duplicate_threshold", threshold)
    seeds = load_seeds(write_jsonl(tmp_path / "emb.jsonl", [tagged(t) for t in texts]))
    report = lint_seeds(seeds, embedder=TableEmbedder(vectors))
    near = [(f.row, f.other_row, f.kind) for f in report.findings if f.kind.startswith("near")]
    assert near == [(2, 1, "near_duplicate_embedding")]  # 0.85 >= 0.8; the Korean row at 0.75 is not
    assert asked == ["test-table-embedder"]
    assert any("cosine >= 0.800" in n for n in report.notes)
    monkeypatch.setattr(embed, "near_duplicate_threshold", lambda embedder, store=None: 0.7)
    report = lint_seeds(seeds, embedder=TableEmbedder(vectors))
    assert [f.row for f in report.findings if f.kind == "near_duplicate_embedding"] == [2, 3]


def test_lint_still_works_and_says_so_when_embeddings_are_unavailable(tmp_path):
    class Broken:
        name = "missing-model"

        def encode(self, texts):
            raise RuntimeError("The embedding model is not installed")

    seeds = load_seeds(write_jsonl(tmp_path / "x.jsonl", [tagged("Explain NPV."), tagged("https://example.com")]))
    report = lint_seeds(seeds, embedder=Broken())
    assert [f.kind for f in report.findings] == ["not_a_task"]
    assert any("not checked" in n and "not installed" in n for n in report.notes)


def test_mixed_languages_but_not_korean_with_english_terms_code_or_numbers(tmp_path):
    mixed = ["NPV와 IRR의 차이를 설명하세요. Also explain why analysts prefer IRR in practice.",
             "Explain the main risks of leveraged ETFs for retail investors. 그리고 예시도 들어 주세요."]
    fine = ["NPV와 IRR의 차이를 설명하고, ETF 투자 시 주의할 점을 알려 주세요.",
            "다음 코드를 설명하세요. `df.groupby('ticker').agg({'price': 'mean'})`",
            "연 5% 금리로 1,000,000원을 3년 동안 복리로 투자하면 얼마가 되나요?",
            "Apple Inc.의 2023년 EPS와 P/E ratio를 계산하세요.",
            "다음 문장을 영어로 번역하세요: 금리가 올랐다.",
            "Explain what the Korean word 정 means in one paragraph."]
    report = lint_file(write_jsonl(tmp_path / "mix.jsonl", [tagged(t) for t in mixed + fine]))
    assert [f.row for f in report.findings if f.kind == "mixed_language"] == [1, 2]
    assert report.findings == [f for f in report.findings if f.row in (1, 2)]  # nothing else to say about them


def test_missing_tags_name_what_is_missing(tmp_path):
    rows = [{"instruction": "Explain NPV to a beginner."}, {"instruction": "NPV를 초보자에게 설명하세요.", "skill": "finance"},
            {"instruction": "Explain IRR.", "difficulty": 4}, tagged("Explain duration.")]
    report = lint_file(write_jsonl(tmp_path / "tags.jsonl", rows))
    missing = {f.row: f.message for f in report.findings if f.kind == "missing_tags"}
    assert set(missing) == {1, 2, 3}
    assert "no skill and no difficulty" in missing[1]
    assert "no difficulty" in missing[2] and "skill" not in missing[2].split(":")[0]
    assert "no skill" in missing[3] and "difficulty" not in missing[3].split(":")[0]
    assert all(f.fixes == ("tag",) for f in report.findings if f.kind == "missing_tags")


def test_rows_that_are_not_tasks_in_english_and_korean(tmp_path):
    not_tasks = ["https://www.investopedia.com/terms/n/npv.asp", "www.example.co.kr/bonds", "12,345.67",
                 "Introduction to Bond Pricing", "## Chapter 3: Portfolio Risk", "Portfolio theory:",
                 "채권 가격 결정의 기초", "제3장 포트폴리오 위험", "주식과 채권"]
    tasks = ["Explain NPV.", "What is the yield curve?", "Please summarize the article below.",
             "Can you list three risks of margin trading?", "Given a 5% rate, compute the present value of $100.",
             "NPV를 설명해 주세요.", "금리가 오르면 채권 가격은 왜 떨어지나요?", "재무제표를 분석하시오.",
             "ETF와 뮤추얼 펀드의 차이점은?", "주식 투자의 위험 요소 세 가지를 정리"]
    report = lint_file(write_jsonl(tmp_path / "tasks.jsonl", [tagged(t) for t in not_tasks + tasks]))
    flagged = [f.row for f in report.findings if f.kind == "not_a_task"]
    assert flagged == list(range(1, len(not_tasks) + 1))
    assert report.findings == [f for f in report.findings if f.kind == "not_a_task"]
    messages = {f.row: f.message for f in report.findings}
    assert "URL" in messages[1] and "number" in messages[3] and "heading" in messages[5]


# -- fixes ----------------------------------------------------------------------------------------------------

def test_fixes_drop_merge_and_tag():
    seeds = [Seed("Explain NPV.", skill="finance"), Seed("explain npv.", input="ctx", difficulty=2),
             Seed("채권이란?", language="ko")]
    merged = apply_fix(seeds, Finding(2, "duplicate", "", ("merge", "drop"), other_row=1), "merge")
    assert merged == [Seed("Explain NPV.", skill="finance", difficulty=2), seeds[2]]  # tags, not the other input
    assert apply_fix(seeds, Finding(2, "duplicate", "", ("merge", "drop"), other_row=1), "drop") == [seeds[0], seeds[2]]
    tagged_ = apply_fix(seeds, Finding(3, "missing_tags", "", ("tag",)), "tag", skill=" 금융 ", difficulty=4)
    assert tagged_[2].skill == "금융" and tagged_[2].difficulty == 4 and tagged_[2].language == "ko"
    assert seeds[2].skill is None  # the input set is not changed
    with pytest.raises(ValueError, match="offers tag"):
        apply_fix(seeds, Finding(3, "missing_tags", "", ("tag",)), "drop")
    with pytest.raises(ValueError, match="lint it again"):
        apply_fix(seeds, Finding(9, "not_a_task", "", ("drop",)), "drop")


# -- CLI ------------------------------------------------------------------------------------------------------

def test_cli_lists_findings_and_exits_1(tmp_path, capsys):
    path = write_jsonl(tmp_path / "s.jsonl", [tagged("Explain NPV to a beginner."), tagged("채권 가격 결정의 기초"),
                                              {"instruction": "https://example.com/npv"}])
    assert cli.main(["seeds", "lint", str(path), "--no-embed"]) == 1
    out = capsys.readouterr().out
    assert "row 2: not_a_task:" in out and "-> fix: drop" in out
    assert "row 3: missing_tags:" in out and "-> fix: tag" in out
    assert "embedding near-duplicates not checked" in out
    assert cli.main(["seeds", "lint", str(path), "--no-embed", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert {(f["row"], f["kind"]) for f in data["findings"]} == {(2, "not_a_task"), (3, "not_a_task"),
                                                                 (3, "missing_tags")}


def test_cli_clean_file_exits_0_and_unreadable_exits_2(tmp_path, capsys):
    clean = write_jsonl(tmp_path / "clean.jsonl", [tagged("Explain NPV to a beginner."),
                                                  tagged("금리가 오르면 채권 가격은 왜 떨어지나요?")])
    assert cli.main(["seeds", "lint", str(clean), "--no-embed"]) == 0
    assert "0 finding(s): clean" in capsys.readouterr().out
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "Explain NPV."\n', encoding="utf-8")
    assert cli.main(["seeds", "lint", str(broken), "--no-embed"]) == 2
    assert "broken.jsonl, line 1: invalid JSON" in capsys.readouterr().err
    assert cli.main(["seeds", "lint", str(tmp_path / "nope.csv")]) == 2


def test_cli_lint_with_map_and_as_a_real_process(tmp_path, capsys):
    path = tmp_path / "qa.csv"
    path.write_text("question,category,level\nExplain NPV to a beginner.,finance,3\nNPV를 설명하세요.,금융,2\n",
                    encoding="utf-8")
    args = [sys.executable, "-m", "evolab", "seeds", "lint", str(path), "--no-embed"]
    done = subprocess.run(args + ["--map", "instruction=question,skill=category,difficulty=level"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert cli.main(args[3:] + ["--map", "instruction=query"]) == 2
    assert "no column 'query'; the columns are: question, category, level" in capsys.readouterr().err


def test_rouge_pairs_pruned_by_the_bound_are_the_pairs_a_full_comparison_finds():
    import random

    from evolab.embeddings.novelty import rouge_l
    from evolab.seeds.files import load_example

    rng = random.Random(7)
    words = " ".join(s.instruction for s in load_example("general") + load_example("finance")).split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 25))) for _ in range(300)]
    texts += [t.replace(" ", "  ", 1) + " please" for t in texts[:20]]  # near-copies, English and Korean words
    seeds = [Seed(t, skill="x", difficulty=1) for t in texts]
    found = {(f.row, f.other_row) for f in lint_seeds(seeds, use_embeddings=False).findings
             if f.kind == "near_duplicate_rouge"}
    expected = set()
    for j in range(1, len(texts)):
        scores = [rouge_l(texts[i], texts[j]) for i in range(j)]
        best = max(range(j), key=scores.__getitem__)
        if scores[best] > 0.7:
            expected.add((j + 1, best + 1))
    assert len(expected) >= 20 and found == expected


NASTY = ["\u200b", "?", "!!!", "ㅋㅋㅋ", "a" * 5000, "NPV " * 3, "```\nprint(1)\n```", "<https://x.y>", "제1장",
         "Ünïcödé façade", "١٢٣", "🙂 🙂", "\t\n\r", "## ", "http://", "가\u0301"]


def test_lint_never_crashes_on_nasty_text():
    from hypothesis import given, settings
    from hypothesis import strategies as text_st

    pieces = text_st.sampled_from(NASTY) | text_st.text(max_size=60)

    @settings(max_examples=30, deadline=None)
    @given(text_st.lists(text_st.tuples(pieces, pieces), min_size=1, max_size=6))
    def check(rows):
        seeds = [Seed(instruction=a, input=b, language="ko" if "가" in a else "en") for a, b in rows]
        report = lint_seeds(seeds, use_embeddings=False)
        assert all(1 <= f.row <= len(seeds) and f.kind in KINDS and f.fixes for f in report.findings)
        for f in report.findings:
            assert len(apply_fix(seeds, f, f.fixes[0], skill="s", difficulty=1)) in (len(seeds), len(seeds) - 1)

    check()


def test_one_fix_for_every_finding_of_a_kind():
    from evolab.seeds.lint import apply_fix_all

    seeds = [Seed("Explain NPV to a beginner.", skill="finance"), Seed("explain NPV to a beginner.", difficulty=2),
             Seed("Explain  NPV to a beginner.", input="project A"), Seed("https://example.com", skill="x"),
             Seed("NPV를 초보자에게 설명하세요.", skill="금융", difficulty=2), Seed("npv를 초보자에게 설명하세요.")]
    report = lint_seeds(seeds, use_embeddings=False)
    duplicates = [f for f in report.findings if f.kind == "duplicate"]
    assert [(f.row, f.other_row) for f in duplicates] == [(2, 1), (6, 5)]
    merged = apply_fix_all(seeds, duplicates, "merge")
    assert [s.instruction for s in merged] == [seeds[0].instruction, seeds[2].instruction, seeds[3].instruction,
                                               seeds[4].instruction]
    assert (merged[0].skill, merged[0].difficulty) == ("finance", 2)
    dropped = apply_fix_all(merged, [f for f in lint_seeds(merged, use_embeddings=False).findings
                                     if f.kind == "not_a_task"], "drop")
    assert "https://example.com" not in [s.instruction for s in dropped] and len(dropped) == 3
    chain = [Finding(3, "near_duplicate_rouge", "", ("merge", "drop"), other_row=2),
             Finding(2, "near_duplicate_rouge", "", ("merge", "drop"), other_row=1)]
    rows = [Seed("a b c d"), Seed("a b c e", skill="s"), Seed("a b c f", difficulty=5)]
    assert apply_fix_all(rows, chain, "merge") == [Seed("a b c d", skill="s", difficulty=5)]
    with pytest.raises(ValueError, match="tag each row"):
        apply_fix_all(rows, chain, "tag")
