"""Pairwise LLM judge: are the evolved data better than where they started?

Two comparisons:
- `judge_rounds(store, client, run_id, round_a, round_b)`: for each seed (root), the node of round A
  and the node of round B (status seed or kept, with a response; the first created when a round has
  several) -- e.g. round 0 against round 2 of the same run;
- `judge_runs(store, client, run_a, run_b)`: two runs on the same seeds, matched by the root's seed
  instruction; per seed, each run's deepest kept node with a response (or the node of `round`).

Each item is judged twice with the answers swapped, as in Vicuna / AlpaGasus / WizardLM, to cancel
the judge's position bias. The prompt is Vicuna's: rate Assistant 1 and Assistant 2 from 1 to 10,
the two numbers alone on the first line. When the two sides answer different instructions (evolved
ones), both instruction-response pairs are shown and rated as training examples.

Outcome for side A: win = two wins, or a win and a tie; tie = two ties, or a win and a loss;
lose otherwise. A reply that cannot be parsed (or a failed call) makes the verdict None and the
outcome "unknown" -- never a silent tie.
"""
from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any, Coroutine, Iterable, TypeVar

import pandas as pd

from evolab.llm.base import LLMError, Messages
from evolab.llm.client import LLMClient
from evolab.schema import Node
from evolab.store import Store, text_hash
from evolab.text.reading import PAIRWISE, ask
from evolab.text.replies import read_pair_scores

WIN, TIE, LOSE, UNKNOWN = "win", "tie", "lose", "unknown"
POOL_STATUSES = ("seed", "kept")

SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."

# The Vicuna / AlpaGasus answer format both review requests end with: two scores on the first line.
SCORE_FORMAT = (
    "receives an overall score on a scale of 1 to 10, where a higher score indicates better overall "
    "performance.\n"
    "Please first output a single line containing only two values indicating the scores for Assistant 1 "
    "and 2, respectively. The two scores are separated by a space. In the subsequent line, please provide "
    "a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the "
    "order in which the responses were presented does not affect your judgment."
)

REVIEW_REQUEST = (
    "We would like to request your feedback on the performance of two AI assistants in response to the "
    "user question displayed above.\n"
    "Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant "
    + SCORE_FORMAT
)

PAIR_REVIEW_REQUEST = (
    "We would like to request your feedback on two instruction-response pairs written for instruction "
    "tuning. Both grew from the seed instruction displayed above.\n"
    "Please rate each pair as a training example: how helpful, relevant, accurate and detailed the response "
    "is for its own instruction, and how useful and well specified the instruction is. Each assistant "
    + SCORE_FORMAT
)


@dataclass
class Side:
    """One answer to compare: the node, its instruction (+ input) and response."""

    label: str
    node: Node

    @property
    def question(self) -> str:
        n = self.node
        return f"{n.instruction}\n\n{n.input}" if n.input else n.instruction


def judge_messages(first: Side, second: Side, seed_instruction: str | None = None) -> Messages:
    """The judge prompt with `first` as Assistant 1 and `second` as Assistant 2."""
    if first.question.strip() == second.question.strip():
        user = (f"[Question]\n{first.question}\n\n"
                f"[The Start of Assistant 1's Answer]\n{first.node.response}\n\n[The End of Assistant 1's Answer]\n\n"
                f"[The Start of Assistant 2's Answer]\n{second.node.response}\n\n[The End of Assistant 2's Answer]\n\n"
                f"[System]\n{REVIEW_REQUEST}\n\n")
    else:
        user = (f"[Seed Instruction]\n{seed_instruction or ''}\n\n"
                f"[The Start of Assistant 1's Pair]\n[Instruction]\n{first.question}\n\n[Response]\n"
                f"{first.node.response}\n\n[The End of Assistant 1's Pair]\n\n"
                f"[The Start of Assistant 2's Pair]\n[Instruction]\n{second.question}\n\n[Response]\n"
                f"{second.node.response}\n\n[The End of Assistant 2's Pair]\n\n"
                f"[System]\n{PAIR_REVIEW_REQUEST}\n\n")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_scores(reply: str | None) -> tuple[float, float] | None:
    """The two scores (Assistant 1, Assistant 2), each 1-10, as a person reads them; None when unreadable
    (evolab.text.replies.read_pair_scores)."""

    return read_pair_scores(reply)


def verdict(score_a: float, score_b: float) -> str:
    return WIN if score_a > score_b else (TIE if score_a == score_b else LOSE)


def combine(first: str | None, second: str | None) -> str:
    """Outcome for A from its two verdicts (A first, then A second)."""
    if first not in (WIN, TIE, LOSE) or second not in (WIN, TIE, LOSE):
        return UNKNOWN
    pair = sorted((first, second))
    if pair in ([WIN, WIN], [TIE, WIN]):
        return WIN
    if pair in ([TIE, TIE], [LOSE, WIN]):
        return TIE
    return LOSE


@dataclass
class Item:
    key: str
    a: Side
    b: Side
    seed_instruction: str


async def judge_item(client: LLMClient, item: Item, *, max_tokens: int = 256,
                     temperature: float = 0.0) -> dict[str, Any]:
    """Ask twice (A first, then B first); return the judgment row (not yet stored). Each side is read with
    structured output where the endpoint has it, else as free text, with one stricter retry; an unreadable
    reply makes that verdict None (the outcome is then "unknown")."""
    replies: list[str | None] = [None, None]
    readings: list[tuple[float, float] | None] = [None, None]
    hows: list[str | None] = [None, None]
    errors: list[str | None] = [None, None]

    async def one(i: int, first: Side, second: Side) -> None:
        try:
            reading = await ask(client, judge_messages(first, second, item.seed_instruction), PAIRWISE,
                                purpose="judge", temperature=temperature, max_tokens=max_tokens)
            replies[i], readings[i], hows[i] = reading.reply, reading.value, reading.how
        except LLMError as e:
            errors[i] = str(e)

    await asyncio.gather(one(0, item.a, item.b), one(1, item.b, item.a))
    s1, s2 = readings
    first = verdict(s1[0], s1[1]) if s1 else None  # A is Assistant 1
    second = verdict(s2[1], s2[0]) if s2 else None  # A is Assistant 2
    detail = {"scores_first": list(s1) if s1 else None, "scores_second": list(s2) if s2 else None,
              "reply_first": replies[0], "reply_second": replies[1], "read_as": hows}
    if any(errors):
        detail["errors"] = errors
    return {"item_key": item.key, "label_a": item.a.label, "label_b": item.b.label, "node_a": item.a.node.id,
            "node_b": item.b.node.id, "first_verdict": first, "second_verdict": second,
            "outcome": combine(first, second), "judge": client.model,
            "detail": json.dumps(detail, ensure_ascii=False)}


async def judge_items(store: Store, client: LLMClient, comparison: str, items: list[Item], *,
                      max_tokens: int = 256, temperature: float = 0.0) -> list[dict[str, Any]]:
    """Judge every item concurrently (the client's limit applies) and store each row as it completes."""

    async def one(item: Item) -> dict[str, Any]:
        row = await judge_item(client, item, max_tokens=max_tokens, temperature=temperature)
        row["comparison"] = comparison
        store.add_judgment(row)
        return row

    return list(await asyncio.gather(*(one(i) for i in items)))


def _usable(n: Node) -> bool:
    return n.status in POOL_STATUSES and bool((n.response or "").strip())


def _first(nodes: Iterable[Node]) -> Node | None:
    ordered = sorted(nodes, key=lambda n: (n.created_at, n.id))
    return ordered[0] if ordered else None


def round_items(store: Store, run_id: str, round_a: int, round_b: int) -> list[Item]:
    """Per root: the first-created usable node of round A and of round B (roots missing either are skipped)."""
    nodes = store.nodes(run_id)
    roots = {n.id: n for n in nodes if n.parent_id is None}
    by_root: dict[str, dict[int, list[Node]]] = {}
    for n in nodes:
        if _usable(n) and n.round in (round_a, round_b):
            by_root.setdefault(n.root_id, {}).setdefault(n.round, []).append(n)
    items = []
    for root_id in sorted(by_root):
        a, b = _first(by_root[root_id].get(round_a, [])), _first(by_root[root_id].get(round_b, []))
        if a is None or b is None:
            continue
        seed = roots.get(root_id)
        items.append(Item(key=root_id, a=Side(f"round {round_a}", a), b=Side(f"round {round_b}", b),
                          seed_instruction=seed.instruction if seed else a.instruction))
    return items


def _normalise(text: str) -> str:
    return " ".join((text or "").split()).casefold()


def _pick_for_run(nodes: list[Node], round: int | None) -> dict[str, tuple[str, Node]]:
    """seed-instruction key -> (seed instruction, chosen node) for one run."""
    roots = {n.id: n for n in nodes if n.parent_id is None}
    groups: dict[str, list[Node]] = {}
    for n in nodes:
        if _usable(n) and (round is None or n.round == round):
            groups.setdefault(n.root_id, []).append(n)
    out: dict[str, tuple[str, Node]] = {}
    for root_id, members in groups.items():
        root = roots.get(root_id)
        if root is None:
            continue
        deepest = max(m.round for m in members)
        chosen = _first(m for m in members if m.round == deepest)
        key = text_hash(_normalise(root.instruction) + "\n" + _normalise(root.input))
        out.setdefault(key, (root.instruction, chosen))
    return out


def run_items(store: Store, run_a: str, run_b: str, round: int | None = None) -> list[Item]:
    """Per seed instruction present in both runs: each run's deepest usable node (or the node of `round`)."""
    a, b = _pick_for_run(store.nodes(run_a), round), _pick_for_run(store.nodes(run_b), round)
    items = []
    for key in sorted(set(a) & set(b)):
        seed, node_a = a[key]
        node_b = b[key][1]
        items.append(Item(key=key, a=Side(run_a, node_a), b=Side(run_b, node_b), seed_instruction=seed))
    return items


def rounds_comparison(run_id: str, round_a: int, round_b: int) -> str:
    return f"{run_id}:round{round_a}-vs-round{round_b}"


def runs_comparison(run_a: str, run_b: str, round: int | None = None) -> str:
    return f"{run_a}-vs-{run_b}" + ("" if round is None else f":round{round}")


async def judge_rounds(store: Store, client: LLMClient, run_id: str, round_a: int, round_b: int, *,
                       max_tokens: int = 256, temperature: float = 0.0) -> dict[str, Any]:
    """Judge round A against round B of one run; rows are stored under `rounds_comparison(...)`.
    Returns the summary (`summarize_judgments`) plus comparison name and the rows."""
    comparison = rounds_comparison(run_id, round_a, round_b)
    rows = await judge_items(store, client, comparison, round_items(store, run_id, round_a, round_b),
                             max_tokens=max_tokens, temperature=temperature)
    return {"comparison": comparison, **summarize_judgments(rows), "rows": rows}


async def judge_runs(store: Store, client: LLMClient, run_a: str, run_b: str, *, round: int | None = None,
                     max_tokens: int = 256, temperature: float = 0.0) -> dict[str, Any]:
    """Judge run A against run B on their shared seeds; rows stored under `runs_comparison(...)`."""
    comparison = runs_comparison(run_a, run_b, round)
    rows = await judge_items(store, client, comparison, run_items(store, run_a, run_b, round),
                             max_tokens=max_tokens, temperature=temperature)
    return {"comparison": comparison, **summarize_judgments(rows), "rows": rows}


T = TypeVar("T")


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from inside a running loop (a notebook): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def judge_rounds_sync(store: Store, client: LLMClient, run_id: str, round_a: int, round_b: int,
                      **kwargs: Any) -> dict[str, Any]:
    return _run_sync(judge_rounds(store, client, run_id, round_a, round_b, **kwargs))


def judge_runs_sync(store: Store, client: LLMClient, run_a: str, run_b: str, **kwargs: Any) -> dict[str, Any]:
    return _run_sync(judge_runs(store, client, run_a, run_b, **kwargs))


def summarize_judgments(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts and rates (over all items, unknown included) of win / tie / lose / unknown for side A."""
    rows = list(rows)
    n = len(rows)
    counts = {k: sum(1 for r in rows if r.get("outcome") == k) for k in (WIN, TIE, LOSE)}
    counts[UNKNOWN] = n - sum(counts.values())
    out: dict[str, Any] = {"n": n, **counts}
    for k in (WIN, TIE, LOSE, UNKNOWN):
        out[f"{k}_rate"] = counts[k] / n if n else float("nan")
    decided = counts[WIN] + counts[TIE] + counts[LOSE]
    out["decided"] = decided
    return out


def position_swap_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How the two orders of each pair went: `pairs`; `both_read` (a verdict in both orders); `same` (the
    same verdict for A whichever answer came first); `flipped` (the order changed the verdict: position bias);
    `unread` (at least one order unreadable)."""
    rows = list(rows)
    valid = (WIN, TIE, LOSE)
    both = [r for r in rows if r.get("first_verdict") in valid and r.get("second_verdict") in valid]
    same = sum(1 for r in both if r["first_verdict"] == r["second_verdict"])
    return {"pairs": len(rows), "both_read": len(both), "same": same, "flipped": len(both) - same,
            "unread": len(rows) - len(both)}


def judgments_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The stored judgment rows as a DataFrame (detail JSON left as text)."""
    cols = ["comparison", "item_key", "label_a", "label_b", "node_a", "node_b", "first_verdict", "second_verdict",
            "outcome", "judge", "detail"]
    rows = list(rows)
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)
