"""Crafting a seed set: grow it, tag it, see what it covers (issue 10, part A).

- **Grow** (Self-Instruct, Wang et al. 2023, arXiv:2212.10560, section 2.2): every prompt shows 8 in-context
  examples, 6 from the hand seeds and 2 from those already generated (fewer when fewer exist), and asks for new
  instructions in the same domain and language. A new instruction is kept only when its ROUGE-L to every seed
  (hand and generated, and the ones kept earlier in the same reply) is below 0.7, it is not an embedding
  near-duplicate of any of them (`embed.near_duplicate_threshold`), and it is in the set's language. Every
  candidate, kept or rejected with its reason, is written to the store as its call completes; the examples of
  call i are drawn by an RNG seeded with (random seed, job, i), so a re-run of the same job rebuilds the same
  prompts and gets the calls it already paid for from the request cache.
- **Tag**: seeds lacking a skill or a difficulty are asked, with a JSON schema (evolab.text.reading), for the skill
  from the set's own list (or a proposed new one) and the difficulty on WizardLM's 1-10 question. An unreadable
  reply leaves the seed untagged, with the reason; tags are proposals a person accepts or changes.
- **Coverage**: skills x difficulty counts of the set, empty and thin cells marked; "grow here" is a grow job
  with a target skill and difficulty, whose seeds carry those tags as proposed.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from evolab.embeddings import novelty
from evolab.embeddings.embed import embed_texts, embedder_from_env, near_duplicate_threshold, node_text
from evolab.engine.operations import load_template
from evolab.llm.base import BudgetExceeded, LLMError
from evolab.llm.client import LLMClient, make_backend
from evolab.schema import RunConfig, Seed
from evolab.store import Store, text_hash
from evolab.text import replies
from evolab.text.language import detect_language
from evolab.text.reading import NEW_SKILL, ask, tag_kind

MIN_SEEDS = 3
HAND_EXAMPLES, GENERATED_EXAMPLES = 6, 2  # Self-Instruct: 8 in-context examples, 6 human-written and 2 generated
ROUGE_L_BELOW = novelty.ROUGE_L_MAX  # keep only when ROUGE-L to every seed is below 0.7
MIN_WORDS = 3  # shorter than this (words; Hangul counted per syllable pair) is a title, not a task
MAX_WORDS = 150  # Self-Instruct drops instructions longer than 150 words
KEPT, REJECTED = "kept", "rejected"
# Why a candidate was rejected (grow_candidates.reason).
REASONS = {
    "unreadable": "the reply held no numbered list of instructions (a refusal or prose)",
    "too_short": f"fewer than {MIN_WORDS} words: a title, not a task",
    "too_long": f"more than {MAX_WORDS} words (Self-Instruct's limit)",
    "wrong_language": "not in the set's language",
    "prompt_leak": "repeats the grow prompt's own wording, not a task",
    "rouge_l": f"ROUGE-L >= {ROUGE_L_BELOW} to an existing seed",
    "near_duplicate": "an embedding near-duplicate of an existing seed",
    "llm_error": "the call failed after retries",
}


class SeedcraftError(ValueError):
    """Bad input for growing or tagging; str() is the message to show."""


def seed_id(seed: Seed | str) -> str:
    """A seed's stable id in provenance records: the start of its instruction's sha256."""
    return text_hash(seed if isinstance(seed, str) else seed.instruction)[:12]


def endpoint_host(base_url: str | None) -> str:
    """Where the calls went, for provenance: host[:port] of the URL (never a path, query or key), or "embedded"."""
    if not base_url:
        return "embedded"
    parsed = urlparse(base_url)
    return parsed.netloc.rpartition("@")[2] or base_url.split("/")[0]


def set_language(seeds: list[Seed]) -> str:
    """The language most of the set is written in (ties: English)."""
    counts = Counter(s.language or detect_language(s.instruction) for s in seeds)
    return "ko" if counts["ko"] > counts["en"] else "en"


# -- grow -------------------------------------------------------------------------------------------------
@dataclass
class GrowSpec:
    """What to grow. The job id hashes everything that shapes the prompts (not `n`: asking for more later
    continues the same job)."""

    seeds: list[Seed]
    n: int
    language: str | None = None  # None: the set's own (set_language)
    target_skill: str | None = None  # "grow here": a coverage cell
    target_difficulty: str | None = None  # "7" or a bin "7-8"
    per_call: int = 8  # instructions asked for per call
    random_seed: int = 0
    temperature: float = 0.7
    max_tokens: int = 1024
    # An example's input is shown up to this many characters (0: not at all): a long table or passage would crowd
    # out the examples (or overflow a small model's context) while it tells little about the domain.
    example_input_chars: int = 300
    examples: int = HAND_EXAMPLES + GENERATED_EXAMPLES  # in-context examples per prompt (Self-Instruct: 8)

    def resolved_language(self) -> str:
        return self.language if self.language in ("en", "ko") else set_language(self.seeds)

    def job_id(self, model: str, endpoint: str) -> str:
        key = json.dumps({"seeds": [[s.instruction, s.input] for s in self.seeds], "language": self.resolved_language(),
                          "skill": self.target_skill, "difficulty": self.target_difficulty, "per_call": self.per_call,
                          "random_seed": self.random_seed, "temperature": self.temperature,
                          "max_tokens": self.max_tokens, "model": model, "endpoint": endpoint,
                          **({"example_input_chars": self.example_input_chars}
                             if self.example_input_chars != 300 else {}),
                          **({"examples": self.examples} if self.examples != 8 else {})},
                         ensure_ascii=False, sort_keys=True)
        return "grow-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def check_spec(spec: GrowSpec) -> None:
    if len(spec.seeds) < MIN_SEEDS:
        raise SeedcraftError(f"Growing needs at least {MIN_SEEDS} seeds to show the model the domain; the set has "
                             f"{len(spec.seeds)}. Write a few more by hand first.")
    if spec.n < 1:
        raise SeedcraftError("Ask for at least one new seed (--n 1 or more).")
    if spec.per_call < 1:
        raise SeedcraftError("Ask for at least one instruction per call.")
    if spec.examples < 1:
        raise SeedcraftError("Show the model at least one example per call.")
    if spec.target_difficulty is not None:
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", str(spec.target_difficulty))
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2) or m.group(1)) <= 10:
            raise SeedcraftError(f"Target difficulty {spec.target_difficulty!r}: give a whole number from 1 to 10 or a "
                                 "range such as 7-8.")
        spec.target_difficulty = m.group(1) + (f"-{m.group(2)}" if m.group(2) and m.group(2) != m.group(1) else "")


def _target_text(spec: GrowSpec, language: str) -> str:
    if not spec.target_skill and not spec.target_difficulty:
        return ""
    if language == "ko":
        parts = []
        if spec.target_skill:
            parts.append(f'모든 지시문은 "{spec.target_skill}" 스킬을 다뤄야 합니다.')
        if spec.target_difficulty:
            parts.append(f"난이도는 1(아주 쉬움)부터 10(전문가 수준)까지의 척도에서 {spec.target_difficulty} 정도여야 합니다.")
        return " " + " ".join(parts)
    parts = []
    if spec.target_skill:
        parts.append(f'Every instruction must exercise the skill "{spec.target_skill}".')
    if spec.target_difficulty:
        parts.append(f"Each should be of difficulty {spec.target_difficulty} on a scale from 1 (trivial) to 10 "
                     "(expert level).")
    return " " + " ".join(parts)


def _example_text(seed: Seed, number: int, language: str, input_chars: int = 300) -> str:
    text = f"{number}. {' '.join(seed.instruction.split())}"
    given = " ".join(seed.input.split())
    if given and input_chars > 0:
        given = given if len(given) <= input_chars else given[:input_chars].rstrip() + " …"
        text += f"\n   {'입력' if language == 'ko' else 'Input'}: {given}"
    return text


def pick_examples(hand: list[Seed], generated: list[Seed], rng: random.Random, total: int = 8) -> list[Seed]:
    """Self-Instruct's 8 in-context examples: 6 hand seeds and 2 generated ones (fewer when fewer exist; the
    hand seeds fill the generated slots while there are fewer than 2 generated), shuffled. Another `total` keeps
    the same 3:1 share (4 -> 3 + 1), for a model whose context cannot hold 8."""
    n_generated = min(max(1, round(total * GENERATED_EXAMPLES / (HAND_EXAMPLES + GENERATED_EXAMPLES))) if total > 1
                      else 0, len(generated))
    n_hand = min(len(hand), total - n_generated)
    chosen = rng.sample(hand, n_hand) + rng.sample(generated, n_generated)
    rng.shuffle(chosen)
    return chosen


def build_grow_prompt(examples: list[Seed], spec: GrowSpec, language: str) -> str:
    return load_template("grow", language).render(
        count=str(len(examples)), ask=str(spec.per_call), target=_target_text(spec, language),
        examples="\n".join(_example_text(s, i, language, spec.example_input_chars) for i, s in enumerate(examples, 1)))


def _word_count(text: str) -> int:
    # Hangul is tokenized per syllable by novelty.tokenize; two syllables make about one word.
    tokens = novelty.tokenize(text)
    hangul = sum(1 for t in tokens if len(t) == 1 and "\uac00" <= t <= "\ud7a3")
    return len(tokens) - hangul + math.ceil(hangul / 2)


@dataclass
class GrowResult:
    job_id: str
    status: str  # finished | stopped | budget | max_calls | failed
    kept: int
    calls: int
    new_seeds: list[Seed] = field(default_factory=list)
    message: str = ""


ProgressFn = Callable[[dict[str, Any]], None]


class _Pool:
    """Every seed a candidate is compared with: texts for ROUGE-L and their embedding matrix."""

    def __init__(self, texts: list[str], embedder: Any, store: Store | None):
        self._embed = lambda items: embed_texts(items, embedder, store)
        self.texts = list(texts)
        self.vectors = self._embed(self.texts) if embedder is not None else None

    def add(self, text: str, vector: np.ndarray | None) -> None:
        self.texts.append(text)
        if self.vectors is not None and vector is not None:
            self.vectors = np.vstack([self.vectors, vector[None, :]])


def prompt_lines(language: str) -> list[str]:
    """The grow prompt's own sentences: a small model echoes them back as "new instructions"."""
    text = load_template("grow", language).text
    return [line.strip("- ").strip() for line in text.split("\n") if line.strip() and "{" not in line]


def _filter(candidates: list[tuple[str, str]], pool: _Pool, language: str, threshold: float | None,
            store: Store | None) -> list[dict[str, Any]]:
    """Self-Instruct's filter, in order, each candidate against the pool and the ones kept before it."""

    own_words = prompt_lines(language)

    vectors = pool._embed([node_text(i, x) for i, x in candidates]) if pool.vectors is not None and candidates \
        else None
    out = []
    for position, (instruction, given) in enumerate(candidates):
        row: dict[str, Any] = {"position": position, "instruction": instruction, "input": given,
                               "status": REJECTED}
        best = novelty.max_rouge_l(instruction, pool.texts)
        if _word_count(instruction) < MIN_WORDS:
            row["reason"] = "too_short"
        elif _word_count(instruction) > MAX_WORDS:
            row["reason"] = "too_long"
        elif novelty.max_rouge_l(instruction, own_words) >= ROUGE_L_BELOW:
            row["reason"] = "prompt_leak"
        elif detect_language(instruction) != language:
            row["reason"], row["detail"] = "wrong_language", f"{detect_language(instruction)}, not {language}"
        elif best >= ROUGE_L_BELOW:
            nearest = max(pool.texts, key=lambda t: novelty.rouge_l(instruction, t))
            row["reason"], row["detail"] = "rouge_l", f"ROUGE-L {best:.2f} with: {nearest[:120]}"
        else:
            vector = vectors[position] if vectors is not None else None
            if vector is not None and pool.vectors is not None and len(pool.vectors):
                sims = pool.vectors @ vector
                j = int(np.argmax(sims))
                if float(sims[j]) >= threshold:
                    row["reason"] = "near_duplicate"
                    row["detail"] = f"cosine {float(sims[j]):.3f} (>= {threshold:.3f}) with: {pool.texts[j][:120]}"
            if "reason" not in row:
                row["status"] = KEPT
                pool.add(instruction, vector)
        out.append(row)
    return out


async def grow(store: Store, client: LLMClient, spec: GrowSpec, *, embedder: Any = "default",
               max_calls: int | None = None, stop_event: threading.Event | None = None,
               progress: ProgressFn | None = None) -> GrowResult:
    """Grow `spec.seeds` until `spec.n` new seeds are kept (counting those kept by earlier runs of the same job),
    `max_calls` calls were made in this run (default: enough for n at a 1-in-3 keep rate, at least 10), the
    budget ran out or `stop_event` was set. `embedder`: "default" asks embed.embedder_from_env(); None skips the
    embedding filter (ROUGE-L only). Every call's candidates are in the store before the next call is made."""

    check_spec(spec)
    language = spec.resolved_language()
    endpoint = client.endpoint or "embedded"
    job_id = spec.job_id(client.model, endpoint)
    if embedder == "default":
        embedder = embedder_from_env([s.instruction for s in spec.seeds])  # the model for the set's languages
    threshold = near_duplicate_threshold(embedder) if embedder is not None else None
    store.start_grow_job(job_id, {"n": spec.n, "language": language, "model": client.model,
                                  "endpoint": endpoint_host(endpoint if endpoint != "embedded" else None),
                                  "target_skill": spec.target_skill, "target_difficulty": spec.target_difficulty,
                                  "per_call": spec.per_call, "random_seed": spec.random_seed,
                                  "seeds": [s.to_dict() for s in spec.seeds], "embedder": getattr(embedder, "name", None)})
    hand = list(spec.seeds)
    # Examples come from the hand seeds in the set's language when there are enough (a mixed set grows per language).
    same_language = [s for s in hand if (s.language or detect_language(s.instruction)) == language]
    hand_examples = same_language if len(same_language) >= MIN_SEEDS else hand
    done = store.grow_candidates(job_id)
    generated = [Seed(**r["seed"]) for r in done if r["status"] == KEPT and r["seed"]]
    pool = _Pool([node_text(s.instruction, s.input) for s in hand + generated], embedder, store)
    call_index = max((r["call_index"] for r in done), default=-1) + 1
    if max_calls is None:
        max_calls = max(10, 3 * math.ceil(spec.n / spec.per_call))
    proposed = [k for k, v in (("skill", spec.target_skill), ("difficulty", spec.target_difficulty)) if v]
    made, status, message = 0, "finished", ""

    def report() -> None:
        if progress:
            progress({"job_id": job_id, "kept": len(generated), "n": spec.n, "call": call_index, "made": made,
                      **{k: v for k, v in store.grow_progress(job_id).items() if k != "kept"}})

    report()
    try:
        while len(generated) < spec.n:
            if stop_event is not None and stop_event.is_set():
                status, message = "stopped", "stopped; run the same command again to continue"
                break
            if made >= max_calls:
                status = "max_calls"
                message = (f"stopped after {made} calls with {len(generated)} of {spec.n} kept; most candidates were "
                           "rejected (see the reasons). Run again to continue, or add more varied hand seeds.")
                break
            rng = random.Random(f"{spec.random_seed}:{job_id}:{call_index}")
            examples = pick_examples(hand_examples, generated, rng, spec.examples)
            prompt = build_grow_prompt(examples, spec, language)
            try:
                comp = await client.complete([{"role": "user", "content": prompt}], purpose="grow",
                                             temperature=spec.temperature, max_tokens=spec.max_tokens,
                                             salt=f"{job_id}:{call_index}")
            except BudgetExceeded as e:
                status, message = "budget", str(e)
                break
            except LLMError as e:
                await asyncio.wrap_future(store.submit("record_grow_call", job_id, call_index, [
                    {"position": -1, "instruction": "", "status": REJECTED, "reason": "llm_error",
                     "detail": str(e)[:300]}]))
                raise
            made += 1
            items = replies.read_instruction_list(comp.text)
            rows = _filter(items[:max(spec.per_call * 2, 16)], pool, language, threshold, store)
            for row in rows:
                if row["status"] == KEPT:
                    seed = Seed(instruction=row["instruction"], input=row["input"], language=language,
                                skill=spec.target_skill,
                                difficulty=_bin_center(spec.target_difficulty) if spec.target_difficulty else None,
                                source={"kind": "generated", "job": job_id, "call": call_index,
                                        "examples": [seed_id(s) for s in examples], "model": client.model,
                                        "endpoint": endpoint_host(endpoint if endpoint != "embedded" else None),
                                        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                        **({"proposed": proposed} if proposed else {})})
                    row["seed"] = seed.to_dict()
                    generated.append(seed)
            if not rows:
                rows = [{"position": -1, "instruction": "", "status": REJECTED, "reason": "unreadable",
                         "detail": " ".join((comp.text or "").split())[:300]}]
            # After the call's cache row on the writer thread: a stored call is never paid for again.
            await asyncio.wrap_future(store.submit("record_grow_call", job_id, call_index, rows))
            call_index += 1
            report()
    except LLMError as e:
        store.set_grow_status(job_id, "failed", str(e)[:500])
        return GrowResult(job_id, "failed", len(generated), made, generated, f"a call failed: {e}")
    store.set_grow_status(job_id, status, message or None)
    return GrowResult(job_id, status, len(generated), made, generated[:max(spec.n, 0)], message)


def grow_sync(store: Store, config: RunConfig, spec: GrowSpec, *, backend: Any = None, **kw: Any) -> GrowResult:
    """`grow` with a client built from a run config (endpoint, key variable, concurrency, budget, caps), as runs
    build theirs; `backend` replaces make_backend(config) (tests)."""
    return asyncio.run(_with_client(config, backend, lambda client: grow(store, client, spec, **kw), store,
                                    run_id=None))


async def _with_client(config: RunConfig, backend: Any, work: Callable, store: Store, run_id: str | None) -> Any:
    client = LLMClient(backend or make_backend(config), store, run_id=run_id, concurrency=config.concurrency,
                       budget_usd=config.budget_usd, budget_tokens=config.budget_tokens, structured=config.structured,
                       price=config.price, prices_file=config.prices_file, rpm=config.rpm, tpm=config.tpm)
    try:
        return await work(client)
    finally:
        await client.aclose()


def grown_set(store: Store, job_id: str, n: int | None = None) -> list[Seed]:
    """The job's hand seeds followed by the seeds it kept, in the order kept (the first `n` of them when given; a
    call may keep more than were still wanted, and they stay in the store for a later, larger n)."""
    job = store.grow_job(job_id)
    if job is None:
        raise KeyError(f"No grow job {job_id!r} in {store.path}.")
    return [Seed(**s) for s in job["config"].get("seeds", [])] + kept_seeds(store, job_id, n)


def kept_seeds(store: Store, job_id: str, n: int | None = None) -> list[Seed]:
    """The seeds a job kept, in the order kept (the first `n` when given)."""
    kept = [Seed(**r["seed"]) for r in store.grow_candidates(job_id, KEPT) if r["seed"]]
    return kept if n is None else kept[:n]


def write_seed_file(seeds: list[Seed], path: str) -> None:
    """JSONL, one seed a line, empty fields left out; `evolab.seeds.files.load_seeds` reads it back with provenance."""
    with open(path, "w", encoding="utf-8") as f:
        for s in seeds:
            f.write(json.dumps({k: v for k, v in s.to_dict().items() if v not in (None, "")}, ensure_ascii=False) + "\n")


def candidates_frame(store: Store, job_id: str) -> pd.DataFrame:
    """Every candidate of a job, newest call first: status, reason (in words) and detail."""
    rows = store.grow_candidates(job_id)
    frame = pd.DataFrame(rows, columns=["call_index", "position", "instruction", "input", "status", "reason",
                                        "detail"])
    frame["why"] = frame["reason"].map(lambda r: REASONS.get(r, r) if isinstance(r, str) else "")
    return frame.sort_values(["call_index", "position"], ascending=[False, True]).reset_index(drop=True)


def grow_cli(store: Store, config: RunConfig, spec: GrowSpec, *, out: str, max_calls: int | None = None,
             print_fn: Callable[[str], None] = print) -> int:
    """`python -m evolab seeds grow`: grow with a line of progress per call, then write the grown set to `out`
    (hand seeds first, then the first n kept). Exit 0 when the set was written, 1 when a call failed."""
    state = {"kept": None}

    def progress(p: dict[str, Any]) -> None:
        if state["kept"] is None:
            if p["calls"]:
                print_fn(f"resuming {p['job_id']}: {p['calls']} calls done, {p['kept']} of {p['n']} seeds kept")
            else:
                print_fn(f"growing {p['job_id']}: {len(spec.seeds)} seeds ({spec.resolved_language()}) -> "
                         f"{p['n']} new")
        else:
            reasons = ", ".join(f"{k} {v}" for k, v in p["by_reason"].items()) or "none"
            print_fn(f"call {p['made']}: +{p['kept'] - state['kept']} kept ({min(p['kept'], p['n'])}/{p['n']}); "
                     f"rejected so far: {reasons}")
        state["kept"] = p["kept"]

    try:
        result = grow_sync(store, config, spec, max_calls=max_calls, progress=progress)
    except KeyboardInterrupt:  # every finished call is stored: say how to go on (exit 130 from the CLI)
        print_fn("interrupted; every finished call is stored: run the same command again to continue")
        raise
    grown = grown_set(store, result.job_id, spec.n)
    write_seed_file(grown, out)
    print_fn(f"{result.status}: {min(result.kept, spec.n)} of {spec.n} new seeds kept in {result.calls} calls this "
             f"run; wrote {len(grown)} seeds to {out}")
    if result.status != "finished":
        print_fn(f"{result.message or result.status}; run the same command again to continue")
    return 1 if result.status == "failed" else 0


def cell_label(row: dict[str, Any] | pd.Series) -> str:
    """How a coverage cell is offered for "grow here"."""
    return f"{row['skill']} × difficulty {row['difficulty']} ({row['count']} seeds, {row['state']})"


def new_seeds_for_table(table: list[Seed], grown: list[Seed]) -> list[Seed]:
    """The grown seeds not already in the table (by instruction and input), to add to it."""
    have = {(s.instruction, s.input) for s in table}
    return [s for s in grown if (s.instruction, s.input) not in have]


# -- tag ------------------------------------------------------------------------------------------------------
@dataclass
class TagProposal:
    """What the model proposed for one seed (None: unreadable or already tagged), with how it was read."""

    index: int
    skill: str | None
    new_skill: bool
    difficulty: int | None
    detail: str


def set_skills(seeds: list[Seed]) -> list[str]:
    """The set's own skill list, most used first."""
    return [s for s, _ in Counter(s.skill for s in seeds if s.skill).most_common()]


def needs_tags(seed: Seed) -> bool:
    return not seed.skill or seed.difficulty is None


def build_tag_prompt(seed: Seed, skills: list[str], language: str) -> str:
    question = seed.instruction if not seed.input else f"{seed.instruction}\n\n{seed.input}"
    if language == "ko":
        choice = (f"다음 중에서 고르세요: {', '.join(skills)}. 어느 것도 맞지 않으면 \"{NEW_SKILL}\"로 답하고 "
                  "새 스킬 이름을 제안하세요." if skills else "짧은 이름(한두 단어)으로 쓰세요.")
    else:
        choice = (f"Choose one of: {', '.join(skills)}. If none fits, answer \"{NEW_SKILL}\" and propose a new "
                  "skill name." if skills else "Use a short name (one or two words).")
    return load_template("tag", language).render(skills=choice, instruction=question)


async def tag_seeds(client: LLMClient, seeds: list[Seed], *, indices: list[int] | None = None,
                    temperature: float = 0.0, max_tokens: int = 96) -> list[TagProposal]:
    """Proposed tags for the seeds that lack a skill or a difficulty (or for `indices`), all asked at once within
    the client's concurrency. A seed keeps the tags it has: only the missing ones are proposed."""
    skills = set_skills(seeds)
    kind = tag_kind(skills)
    todo = indices if indices is not None else [i for i, s in enumerate(seeds) if needs_tags(s)]

    async def one(i: int) -> TagProposal:
        seed = seeds[i]
        language = seed.language or detect_language(seed.instruction)
        try:
            reading = await ask(client, [{"role": "user", "content": build_tag_prompt(seed, skills, language)}], kind,
                                purpose="tag", temperature=temperature, max_tokens=max_tokens, language=language,
                                salt=f"tag:{seed_id(seed)}")
        except LLMError as e:
            return TagProposal(i, None, False, None, f"call failed: {e}"[:300])
        if not reading.readable:
            return TagProposal(i, None, False, None, reading.describe())
        value = reading.value
        skill = value["skill"] if not seed.skill else None
        difficulty = value["difficulty"] if seed.difficulty is None else None
        detail = reading.describe() if (skill or difficulty) else "the reply had no usable tag for what is missing"
        return TagProposal(i, skill, bool(skill) and value["new_skill"], difficulty, detail)

    return list(await asyncio.gather(*(one(i) for i in todo)))


def tag_sync(config: RunConfig, seeds: list[Seed], store: Store | None = None, *, backend: Any = None,
             **kw: Any) -> list[TagProposal]:
    return asyncio.run(_with_client(config, backend, lambda client: tag_seeds(client, seeds, **kw), store,
                                    run_id=None))


def grown_proposals(seeds: list[Seed]) -> list[TagProposal]:
    """The tags "grow here" gave its seeds (marked proposed in their source), for the same review table."""
    out = []
    for i, s in enumerate(seeds):
        proposed = (s.source or {}).get("proposed") or []
        if proposed:
            others = {t.skill for j, t in enumerate(seeds) if j != i and t.skill and not (t.source or {}).get("proposed")}
            out.append(TagProposal(i, s.skill if "skill" in proposed else None,
                                   "skill" in proposed and bool(s.skill) and s.skill not in others,
                                   s.difficulty if "difficulty" in proposed else None, "asked for by grow here"))
    return out


def proposals_frame(seeds: list[Seed], proposals: list[TagProposal]) -> pd.DataFrame:
    """The review table: one row per proposal, the seed's current tags beside the proposed ones, "new skill" when
    the skill is not in the set's list, and "accept" (on for readable proposals) for the person to change."""
    rows = []
    for p in proposals:
        s = seeds[p.index]
        rows.append({"row": p.index, "instruction": s.instruction, "skill": p.skill or s.skill,
                     "difficulty": p.difficulty if p.difficulty is not None else s.difficulty,
                     "proposed": ", ".join(k for k, v in (("skill", p.skill), ("difficulty", p.difficulty))
                                           if v is not None) or "nothing readable",
                     "new skill": p.new_skill, "accept": p.skill is not None or p.difficulty is not None,
                     "detail": p.detail})
    return pd.DataFrame(rows, columns=["row", "instruction", "skill", "difficulty", "proposed", "new skill", "accept",
                                       "detail"])


def apply_tags(seeds: list[Seed], reviewed: pd.DataFrame | list[dict[str, Any]]) -> list[Seed]:
    """The seeds with the accepted rows' skill and difficulty (as the person left them in the table); rows not
    accepted change nothing. A difficulty outside 1-10 or not a number raises SeedcraftError naming the row."""

    rows = reviewed.to_dict("records") if hasattr(reviewed, "to_dict") else list(reviewed)
    out = list(seeds)
    for r in rows:
        if not r.get("accept"):
            continue
        i = int(r["row"])
        skill = r.get("skill")
        skill = skill.strip() if isinstance(skill, str) and skill.strip() else None
        difficulty = r.get("difficulty")
        if difficulty is None or (isinstance(difficulty, float) and math.isnan(difficulty)):
            difficulty = None
        else:
            try:
                difficulty = float(difficulty)
            except (TypeError, ValueError):
                raise SeedcraftError(f"Row {i}: difficulty {difficulty!r} is not a number.") from None
            if not 1 <= difficulty <= 10:
                raise SeedcraftError(f"Row {i}: difficulty {difficulty:g} is outside 1-10.")
            difficulty = int(difficulty) if difficulty.is_integer() else difficulty
        source = dict(out[i].source or {})
        if source.get("proposed"):  # a person looked at them: no longer proposals
            source.pop("proposed")
        out[i] = dataclasses.replace(out[i], skill=skill or out[i].skill,
                                     difficulty=difficulty if difficulty is not None else out[i].difficulty,
                                     source=source or None)
    return out


# -- coverage -------------------------------------------------------------------------------------------------
NO_SKILL, NO_DIFFICULTY = "(no skill)", "(none)"


def difficulty_bins(bins: int = 10) -> list[str]:
    """Labels of `bins` consecutive groups of the 1-10 scale: "1".."10", or "1-2", "3-4", ... ."""
    if not 1 <= bins <= 10:
        raise ValueError("bins must be between 1 and 10")
    groups = np.array_split(np.arange(1, 11), bins)
    return [str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups]


def _bin_of(difficulty: float | None, labels: list[str]) -> str:
    if difficulty is None or (isinstance(difficulty, float) and math.isnan(difficulty)):
        return NO_DIFFICULTY
    d = min(10, max(1, int(math.floor(float(difficulty) + 0.5))))  # 6.5 -> 7, 0 -> 1
    for label in labels:
        low, _, high = label.partition("-")
        if int(low) <= d <= int(high or low):
            return label
    raise AssertionError("unreachable")


def _bin_center(label: str) -> int | float:
    low, _, high = str(label).partition("-")
    center = (int(low) + int(high or low)) / 2
    return int(center) if center.is_integer() else center


def coverage_frame(seeds: list[Seed], *, bins: int = 10, thin: int = 2) -> pd.DataFrame:
    """One row per skill x difficulty cell of the set (every combination, zeros included): count and state
    ("empty", "thin" when below `thin`, "ok"). Seeds without a skill or a difficulty have their own row/column,
    which appear only when such seeds exist."""
    labels = difficulty_bins(bins)
    counts = Counter((s.skill or NO_SKILL, _bin_of(s.difficulty, labels)) for s in seeds)
    skills = sorted({s for s, _ in counts} - {NO_SKILL}) + ([NO_SKILL] if any(s == NO_SKILL for s, _ in counts) else [])
    columns = labels + ([NO_DIFFICULTY] if any(d == NO_DIFFICULTY for _, d in counts) else [])
    rows = [{"skill": s, "difficulty": d, "count": counts.get((s, d), 0)} for s in skills for d in columns]
    frame = pd.DataFrame(rows, columns=["skill", "difficulty", "count"])
    frame["state"] = ["empty" if c == 0 else "thin" if c < thin else "ok" for c in frame["count"]]
    frame["skill"] = pd.Categorical(frame["skill"], categories=skills, ordered=True)
    frame["difficulty"] = pd.Categorical(frame["difficulty"], categories=columns, ordered=True)
    return frame


def gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """The cells worth growing: empty and thin ones with a real skill and difficulty, emptiest first."""
    real = frame[(frame["skill"] != NO_SKILL) & (frame["difficulty"] != NO_DIFFICULTY) & (frame["state"] != "ok")]
    return real.sort_values(["count", "skill", "difficulty"]).reset_index(drop=True)


__all__ = ["GrowSpec", "GrowResult", "grow", "grow_sync", "grown_set", "write_seed_file", "tag_seeds", "tag_sync",
           "apply_tags", "proposals_frame", "coverage_frame", "gaps", "difficulty_bins", "SeedcraftError"]
