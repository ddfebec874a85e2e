"""Lint a seed set: findings a person should look at before evolving it, each with a fix.

Kinds (each names a row, 1 = the first seed, and offers fixes from drop / merge / tag):
- too_short / too_long: length in words for English, in Hangul syllables plus other words for Korean
  (Korean packs a word's meaning into 2-3 syllables, so its bounds are higher);
- duplicate: the same instruction and input (ignoring case, spacing and invisible characters);
- near_duplicate_rouge: ROUGE-L above 0.7 (Self-Instruct's filter, evolab.embeddings.novelty);
- near_duplicate_embedding: cosine at or above the embedder's threshold (evolab.embeddings.embed.threshold_info),
  or its own language's where it has one (e5 on two Korean texts: bench/neardup_ko.py);
- mixed_language: an English sentence and a Korean sentence in one instruction (English terms, tickers,
  numbers and code inside Korean sentences are not mixing);
- missing_tags: no skill or no difficulty;
- not_a_task: a bare URL, only a number, a heading or a title with no request.

`lint_seeds` is pure apart from the embedder; `apply_fix` returns the set with one fix applied.
"""
from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from evolab.embeddings import embed, novelty, wordalign
from evolab.embeddings.embed import node_text
from evolab.embeddings.novelty import ROUGE_L_MAX, rouge_duplicates_lsh, rouge_l_scores, tokenize
from evolab.schema import Seed
from evolab.text.language import detect_language

# (min, max) length units per language: English words; Korean syllables + other words. A 2-word English
# seed ("Explain NPV.") is a fine task, 1 is not; past the max, the evolver's rewrites get cut off.
LENGTH_BOUNDS = {"en": (2, 400), "ko": (4, 1000)}
KINDS = ("too_short", "too_long", "duplicate", "near_duplicate_rouge", "near_duplicate_embedding",
         "mixed_language", "missing_tags", "not_a_task")
FIXES = ("drop", "merge", "tag")


@dataclass
class Finding:
    row: int  # 1-based position of the seed in the set
    kind: str
    message: str
    fixes: tuple[str, ...]  # the first is the suggested one
    other_row: int | None = None  # the row a duplicate would merge into (kept)
    score: float | None = None  # ROUGE-L or cosine of a near-duplicate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not checked, and why

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [f.to_dict() for f in self.findings], "notes": list(self.notes)}


# -- the checks ---------------------------------------------------------------------------------------

def lint_seeds(seeds: Sequence[Seed], *, embedder: Any = None, store: Any = None,
               use_embeddings: bool = True) -> LintReport:
    """All findings for a seed set, in row order. `embedder` None with use_embeddings -> the environment's
    embedder (EVOLAB_EMBED_*); when it cannot be loaded the report says so in `notes` and the rest runs."""
    report = LintReport()
    texts = [node_text(s.instruction, s.input) for s in seeds]  # what a run embeds and compares
    for row, seed in enumerate(seeds, 1):
        not_task = _not_a_task(seed)
        if not_task:
            report.findings.append(Finding(row, "not_a_task", not_task, ("drop",)))
        else:
            report.findings.extend(_length_findings(row, seed))
        mixed = _mixed_language(seed.instruction)
        if mixed:
            report.findings.append(Finding(row, "mixed_language", mixed, ("drop",)))
        missing = [name for name in ("skill", "difficulty") if getattr(seed, name) in (None, "")]
        if missing:
            report.findings.append(Finding(row, "missing_tags", f"no {' and no '.join(missing)}: tag it so "
                                           "coverage and per-skill analyses can count it", ("tag",)))
    paired = set()
    report.findings.extend(_exact_duplicates(texts, paired))
    report.findings.extend(_rouge_duplicates(texts, paired))
    if use_embeddings:
        report.findings.extend(_embedding_duplicates(texts, paired, embedder, store, report.notes))
    else:
        report.notes.append("embedding near-duplicates not checked (switched off)")
    report.findings.sort(key=lambda f: (f.row, KINDS.index(f.kind)))
    return report


def _units(text: str) -> int:
    """English: words. Korean: Hangul syllables plus the other words (novelty's tokens)."""
    return len(tokenize(text))


def _length_findings(row: int, seed: Seed) -> list[Finding]:
    language = seed.language or detect_language(seed.instruction)
    low, high = LENGTH_BOUNDS.get(language, LENGTH_BOUNDS["en"])
    unit = "syllables and words" if language == "ko" else "words"
    instruction_units = _units(seed.instruction)
    total = instruction_units + (_units(seed.input) if seed.input else 0)
    if not seed.input and instruction_units < low:
        return [Finding(row, "too_short", f"{instruction_units} {unit}, under {low} for {language}: too little for a "
                        "task; say what to do and with what", ("drop",))]
    if total > high:
        return [Finding(row, "too_long", f"{total} {unit}, over {high} for {language}: the evolver rewrites the whole "
                        "seed, and long ones get cut off; shorten it or move the passage to a shorter input",
                        ("drop",))]
    return []


def _normalised(text: str) -> str:
    text = "".join(ch for ch in unicodedata.normalize("NFKC", text) if unicodedata.category(ch) not in ("Cf", "Cc")
                   or ch in "\n\t")
    return " ".join(text.casefold().split())


def _exact_duplicates(texts: list[str], paired: set) -> list[Finding]:
    first: dict[str, int] = {}
    out = []
    for row, text in enumerate(texts, 1):
        key = _normalised(text)
        if key in first:
            out.append(Finding(row, "duplicate", f"the same as row {first[key]}", ("merge", "drop"),
                               other_row=first[key], score=1.0))
            paired.add((first[key], row))
        else:
            first[key] = row
    return out


# The sparse bound below is one vectorised product per block: cheaper than LSH on a one-domain set here (CPU:
# 2.1 s against 8.8 s at 10,000 rows, 18.7 s against 63.3 s at 30,000), but its dense block of 512 x rows
# passes 300 MB past 50,000 rows, where LSH (bounded memory) takes over.
LSH_MIN_ROWS = 50_000


def _rouge_duplicates(texts: list[str], paired: set, block: int = 512) -> list[Finding]:
    """Each row's closest earlier row when their ROUGE-L is over 0.7. From LSH_MIN_ROWS rows on, MinHash LSH
    finds the candidate rows (evolab/embeddings/novelty.py), whose cost grows more slowly. Below it, only pairs that can reach it are compared:
    the LCS is at most the dot product of the two token-count vectors, so F = 2 LCS / (n + m) <= 2 dot / (n + m),
    and that bound comes for a whole block of rows from one sparse product."""
    out: list[Finding] = []
    exact = {j for _, j in paired}
    if len(texts) < 2:
        return out
    if len(texts) >= LSH_MIN_ROWS:  # a very large set: MinHash LSH proposes the pairs, ROUGE-L confirms
        for j, i, score in rouge_duplicates_lsh(texts, ROUGE_L_MAX):
            if j + 1 not in exact:
                out.append(_rouge_finding(j, i, score))
                paired.add((i + 1, j + 1))
        return out
    counts = _token_counts(texts)
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    for start in range(0, len(texts), block):
        rows = range(start, min(start + block, len(texts)))
        dots = (counts[rows.start:rows.stop] @ counts[:rows.stop].T).toarray()
        bound = 2 * dots / np.maximum(lengths[rows.start:rows.stop, None] + lengths[None, :rows.stop], 1)
        for k, j in enumerate(rows):
            if j + 1 in exact:  # already an exact duplicate
                continue
            candidates = np.nonzero(bound[k, :j] > ROUGE_L_MAX)[0]
            if not len(candidates):
                continue
            scores = rouge_l_scores(texts[j], [texts[i] for i in candidates])
            best = int(np.argmax(scores))
            if scores[best] > ROUGE_L_MAX:
                i = int(candidates[best])
                out.append(_rouge_finding(j, i, scores[best]))
                paired.add((i + 1, j + 1))
    return out


def _rouge_finding(j: int, i: int, score: float) -> Finding:
    return Finding(j + 1, "near_duplicate_rouge", f"ROUGE-L {score:.2f} with row {i + 1} "
                   f"(over {ROUGE_L_MAX}, Self-Instruct's limit)", ("merge", "drop"), other_row=i + 1,
                   score=round(score, 3))


def _token_counts(texts: list[str]):
    """A sparse rows x vocabulary matrix of novelty's token counts (the tokens ROUGE-L compares)."""
    from scipy.sparse import csr_matrix  # heavy: about 0.3 s, only for this computation

    vocabulary: dict[str, int] = {}
    indptr, indices, data = [0], [], []
    for text in texts:
        for token, count in Counter(tokenize(text)).items():
            indices.append(vocabulary.setdefault(token, len(vocabulary)))
            data.append(count)
        indptr.append(len(indices))
    return csr_matrix((np.array(data, dtype=np.float32), indices, indptr), shape=(len(texts), max(len(vocabulary), 1)))


def _embedding_duplicates(texts: list[str], paired: set, embedder: Any, store: Any, notes: list[str]) -> list[Finding]:
    try:
        embedder = embedder or embed.embedder_from_env(texts)  # MiniLM for an all-English set, else e5
        vectors = embed.embed_texts(texts, embedder, store)
    except Exception as e:  # no model on this machine, endpoint down: the other checks still count
        notes.append(f"embedding near-duplicates not checked: {str(e)[:300]}")
        return []
    threshold = embed.near_duplicate_threshold(embedder, store)  # the model's own (calibrated) threshold
    languages = [detect_language(t) for t in texts]
    # a language's own threshold (e5 on Korean: short finance instructions share their frame and topic words,
    # and its cosines crowd into 0.85-0.97) applies to a pair of two texts in that language; where the language
    # has a word-alignment rule, that rule decides its pairs (evolab/embeddings/wordalign.py)
    info = embed.threshold_info(embedder, store)
    by_language = dict(info.by_language)
    own = {lang: by_language.get(lang, threshold) for lang in set(languages)}
    rules = {lang: rule for lang in set(languages) if (rule := info.alignment_rule_for(lang, lang))}
    notes.append(f"embedding near-duplicates: {embedder.name}, cosine >= {threshold:.3f}"
                 + "".join(f" ({lang}: cosine - {rules[lang].weight:.2f} x word alignment >= {rules[lang].cut:.3f})"
                           if lang in rules else f" ({lang}: >= {t:.3f})"
                           for lang, t in sorted(own.items()) if t != threshold or lang in rules))
    pairs = novelty.near_duplicate_pairs(texts, vectors, min([threshold, *own.values(),
                                                              *(r.floor for r in rules.values())]))
    words = [len(wordalign.text_words(t)) for t in texts]
    ruled = [(int(p.i), int(p.j)) for p in pairs.itertuples() if languages[p.i] == languages[p.j]
             and languages[p.i] in rules and rules[languages[p.i]].applies(words[p.i], words[p.j])]
    try:
        alignment = wordalign.pair_alignments(texts, ruled, embedder, store)
    except Exception as e:  # the words could not be embedded: those pairs fall back to the language's cosine cut
        notes.append(f"word alignment not computed ({str(e)[:200]}): cosine cuts only")
        alignment = {}
    out = []
    flagged = {j for _, j in paired}
    for pair in pairs.sort_values(["j", "cosine"], ascending=[True, False]).itertuples():
        i, j = int(pair.i) + 1, int(pair.j) + 1
        if j in flagged or (i, j) in paired:  # one finding per row: its closest earlier twin
            continue
        rule, aligned = rules.get(languages[i - 1]), alignment.get((i - 1, j - 1))
        if aligned is not None and rule is not None:
            if not rule.flags(pair.cosine, aligned):
                continue
            why = (f"word alignment {aligned:.3f}; cosine - {rule.weight:.2f} x alignment "
                   f"{rule.score(pair.cosine, aligned):.3f}, at or over {rule.cut:.3f} for {embedder.name} on "
                   f"{languages[j - 1]}" if pair.cosine < rule.certain else
                   f"at or over {rule.certain:.3f} for {embedder.name} on {languages[j - 1]}")
        else:
            pair_threshold = own[languages[i - 1]] if languages[i - 1] == languages[j - 1] else threshold
            if pair.cosine < pair_threshold:
                continue
            why = (f"at or over {pair_threshold:.3f} for {embedder.name}"
                   + (f" on {languages[j - 1]}" if pair_threshold != threshold else ""))
        flagged.add(j)
        paired.add((i, j))
        out.append(Finding(j, "near_duplicate_embedding", f"cosine {pair.cosine:.3f} with row {i} ({why})",
                           ("merge", "drop"), other_row=i,
                           score=round(float(pair.cosine), 4)))
    return out


# -- mixed languages ----------------------------------------------------------------------------------

_HANGUL = re.compile("[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_CODE_SPAN = re.compile(r"```.*?```|`[^`\n]*`", re.S)
_SENTENCE_END = re.compile(r"(?<=[.!?。？！])\s+|\n+")
_CODE_CHARS = re.compile(r"[(){}\[\]=;<>_#$/\\|]|\w\.\w")
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def _mixed_language(instruction: str) -> str | None:
    """A message when the instruction holds a Korean sentence and an English one. A sentence counts as
    English only when it has no Hangul, at least 4 Latin words (2+ letters) and no code characters: a Korean
    sentence with "NPV", "ETF" or a formula stays Korean."""
    text = _CODE_SPAN.sub(" ", instruction)
    korean = english = None
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        if _HANGUL.search(sentence):
            korean = korean or sentence
        elif not _CODE_CHARS.search(sentence) and len([w for w in _LATIN_WORD.findall(sentence) if len(w) > 1]) >= 4:
            english = english or sentence
    if korean and english:
        return (f"Korean and English sentences in one instruction ({_clip(korean)} / {_clip(english)}): the "
                "evolver answers in one language; keep one (a translation task is fine: then ignore this)")
    return None


def _clip(text: str, n: int = 30) -> str:
    return repr(text if len(text) <= n else text[:n - 1] + "…")


# -- not a task ---------------------------------------------------------------------------------------

_URL = re.compile(r"^(?:<)?(?:https?://|www\.)\S+?(?:>)?$", re.I)
_NUMBERISH = re.compile(r"^[\d\s.,:;%+\-*/()$€£₩¥#=]+$")
_HEADING = re.compile(r"^(?:#{1,6}\s+|(?:chapter|section|part|unit|lesson|제\s*\d+\s*[장절편])\b)", re.I)
# Words an English request starts with (after "please"/"can you").
_EN_REQUEST = set("""write explain describe list give name summarize summarise translate calculate compute find create
make generate compare classify rewrite edit correct fix tell suggest recommend draft design plan outline analyze analyse
evaluate identify provide convert solve prove show define estimate determine predict propose argue discuss brainstorm
imagine pretend act help answer extract sort rank rate choose select categorize categorise paraphrase simplify expand
shorten improve review check implement debug optimize optimise build construct derive draw compose respond reply
what how why who when where which whom whose is are do does did can could should would will was were has have may
might if given using based according assume suppose consider let i you we please""".split())
# Endings of a Korean request or question (polite, plain, written and noun-form imperatives).
_KO_REQUEST_END = re.compile(
    r"(?:요|까|오|라|줘|봐|죠|나|니|냐|가|지|래|세요|시오|십시오|하라|해라|할 것|것|설명|요약|비교|작성|분석|정리|번역|계산|"
    r"서술|논하시오|제시|추천|평가|구하기|찾기|쓰기|만들기|하기)[.!?。…]*$")
_CLAUSE_END = re.compile(r"[.!?。？！:：]+\s+|[:：]|\n+")  # "번역하세요: 금리가 올랐다." asks in its first clause
_KO_QUESTION_WORDS = re.compile(r"무엇|어떻게|왜|언제|어디|누가|누구|어떤|얼마|몇|뭐|무슨|어느")


def _not_a_task(seed: Seed) -> str | None:
    text = " ".join(seed.instruction.split())
    if _URL.match(text):
        return "only a URL: say what to do with the page (and paste its text as the input)"
    if _NUMBERISH.match(text):
        return "only a number: not an instruction"
    if "?" in text or "？" in text:
        return None
    if detect_language(text) == "ko":
        clauses = _CLAUSE_END.split(_CODE_SPAN.sub(" ", seed.instruction))  # any clause may hold the request
        if any(_KO_REQUEST_END.search(c.strip()) for c in clauses) or _KO_QUESTION_WORDS.search(text):
            return None
        if len(tokenize(text)) <= 30 or _HEADING.match(text):
            return "a title or heading with no request (no question, no 하세요/해 주세요-style ending): say what to do"
        return None
    words = [w.lower() for w in _LATIN_WORD.findall(text)]
    if not words:
        return None
    if _HEADING.match(text) and (len(words) <= 12 or text.endswith(":")):
        return "a heading with no request: say what to do"
    if words[0] in _EN_REQUEST or (len(words) > 1 and words[0] in ("kindly", "now", "then", "also") and
                                   words[1] in _EN_REQUEST):
        return None
    if len(words) <= 10 and not re.search(r"[.!]$", text):
        return "a title with no request (no question, no verb like write / explain / list): say what to do"
    return None


# -- fixes --------------------------------------------------------------------------------------------

def apply_fix(seeds: Sequence[Seed], finding: Finding, fix: str, *, skill: str | None = None,
              difficulty: float | None = None) -> list[Seed]:
    """The set with one fix applied (a new list; rows after a dropped one move up).

    drop: remove the finding's row. merge: remove the row and give the row it duplicates the tags that row lacks
    (skill, difficulty; never the input, which belongs to the removed row's own wording). tag: set the given
    skill and/or difficulty on the row."""
    if fix not in finding.fixes:
        raise ValueError(f"{finding.kind} offers {', '.join(finding.fixes)}, not {fix!r}")
    index = finding.row - 1
    if not 0 <= index < len(seeds):
        raise ValueError(f"row {finding.row} is not in this set of {len(seeds)} seeds; lint it again")
    out = [dataclasses.replace(s) for s in seeds]
    if fix == "drop":
        del out[index]
    elif fix == "merge":
        keep = (finding.other_row or 0) - 1
        if not 0 <= keep < len(out) or keep == index:
            raise ValueError(f"row {finding.row} has no other row to merge into")
        kept, gone = out[keep], out[index]
        out[keep] = dataclasses.replace(kept, skill=kept.skill or gone.skill,
                                        difficulty=kept.difficulty if kept.difficulty is not None else gone.difficulty)
        del out[index]
    else:
        skill = (skill or "").strip() or None
        if skill is None and difficulty is None:
            raise ValueError("tag: give a skill, a difficulty or both")
        seed = out[index]
        out[index] = dataclasses.replace(seed, skill=skill or seed.skill,
                                         difficulty=difficulty if difficulty is not None else seed.difficulty)
    return out


def apply_fix_all(seeds: Sequence[Seed], findings: Sequence[Finding], fix: str) -> list[Seed]:
    """One fix ("drop" or "merge") for many findings at once, e.g. every duplicate. Rows go from the last up: a
    row merges into an earlier one, so no pending row moves, and a chain (3 into 2, 2 into 1) ends in row 1."""
    if fix not in ("drop", "merge"):
        raise ValueError("only drop and merge apply to many rows at once; tag each row")
    out = list(seeds)
    for finding in sorted({f.row: f for f in findings if fix in f.fixes}.values(), key=lambda f: -f.row):
        out = apply_fix(out, finding, fix)
    return out


# -- output -------------------------------------------------------------------------------------------

def format_report(report: LintReport, label: str = "") -> str:
    """Lines for the CLI: one per finding, then the notes."""
    lines = []
    for f in report.findings:
        lines.append(f"row {f.row}: {f.kind}: {f.message} -> fix: {' or '.join(f.fixes)}"
                     + (f" (into row {f.other_row})" if "merge" in f.fixes and f.other_row else ""))
    for note in report.notes:
        lines.append(f"note: {note}")
    head = f"{label}: " if label else ""
    by_kind: dict[str, int] = {}
    for f in report.findings:
        by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
    summary = ", ".join(f"{k} ×{v}" for k, v in by_kind.items())
    lines.append(f"{head}{len(report.findings)} finding(s)" + (f": {summary}" if summary else ": clean"))
    return "\n".join(lines)
