"""Adaptive operation weights: Thompson sampling over the evolution operations (`--ops adaptive`).

Evol-Instruct samples its operations uniformly; an operation that mostly gets its children eliminated costs
calls for nothing. Here each operation has a Beta(alpha, beta) posterior per language, starting at Beta(1, 1),
on the reward

    1 when the child is kept AND its LLM difficulty is higher than its parent's; 0 otherwise.

When the difficulty of the child or of its parent is not known (difficulty scoring off, `score_seeds` off for a
seed parent, an unreadable score) the reward is "kept" alone. A child that *failed* (an endpoint error after
retries, an unreadable judge reply) says nothing about the operation and does not update the posterior.

Each choice draws one value from every allowed operation's posterior and takes the largest (ties: the first in
`operation_names()` order). The draws come from a RNG seeded with (run random seed, node id), and the posterior used
is the one as of that moment: steps that finished before it updated it, steps still in flight did not. Every
decision (node id, operation, posterior, draws) is written to the store before the step's first call, and its
reward when the step is done; a resumed run reads a decided node's operation back instead of sampling again,
and rebuilds the posterior from the stored rewards.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from evolab.engine.operations import operation_names, parse_operation_list
from evolab.schema import ELIMINATED, KEPT, Node, Score

if TYPE_CHECKING:  # pragma: no cover
    from evolab.store import Store

ADAPTIVE = "adaptive"
PRIOR = (1.0, 1.0)
REWARD_TEXT = ("kept and harder than its parent (LLM difficulty rose); kept alone when a difficulty is not "
               "known; failed steps do not count")


def parse_ops_option(text: str) -> tuple[dict[str, float], str]:
    """`--ops`: `constraints=2,breadth=1` -> (weights, "weights"); `adaptive` (every operation) or
    `adaptive:constraints,deepen` (those only) -> (allowed operations, "adaptive"). ValueError names the bad part."""
    head, sep, rest = text.strip().partition(":")
    if head.strip().lower() != ADAPTIVE:
        return parse_operation_list(text), "weights"
    if sep and not rest.strip():
        raise ValueError("After 'adaptive:' name the operations to choose from, e.g. adaptive:constraints,deepen.")
    allowed = parse_operation_list(rest) if rest.strip() else {op: 1.0 for op in operation_names()}
    return {op: (1.0 if w > 0 else 0.0) for op, w in allowed.items()}, ADAPTIVE


def reward_for(status: str, child_difficulty: float | None,
               parent_difficulty: float | None) -> tuple[float | None, str]:
    """(reward, why): 1/0 as the module says; None for a failed step (no update)."""
    if status == ELIMINATED:
        return 0.0, "eliminated"
    if status != KEPT:
        return None, f"{status}: not counted"
    if child_difficulty is None or parent_difficulty is None:
        return 1.0, "kept (difficulty not known: kept alone)"
    rose = child_difficulty > parent_difficulty
    return (1.0 if rose else 0.0), f"kept, difficulty {parent_difficulty:g} -> {child_difficulty:g}"


@dataclass
class Decision:
    operation: str
    posterior: dict[str, list[float]]  # operation -> [alpha, beta] as of the decision
    draws: dict[str, float]


class ThompsonSampler:
    """Beta posteriors per language over `operations`; `choose` is a pure function of the posterior and the RNG."""

    def __init__(self, operations: Iterable[str], random_seed: int = 0):
        self.operations = [op for op in operation_names() if op in set(operations)]
        if not self.operations:
            raise ValueError("Adaptive sampling needs at least one operation.")
        self.random_seed = random_seed
        self.posteriors: dict[str, dict[str, list[float]]] = {}

    def posterior(self, language: str) -> dict[str, list[float]]:
        return self.posteriors.setdefault(language, {op: list(PRIOR) for op in self.operations})

    def rng(self, node_id: str) -> random.Random:
        return random.Random(f"{self.random_seed}|adaptive|{node_id}")

    def choose(self, node_id: str, language: str) -> Decision:
        post = self.posterior(language)
        rng = self.rng(node_id)
        draws = {op: rng.betavariate(a, b) for op, (a, b) in post.items()}
        best = max(self.operations, key=lambda op: draws[op])  # max keeps the first of equal draws
        return Decision(best, {op: list(ab) for op, ab in post.items()}, draws)

    def update(self, language: str, operation: str, reward: float) -> None:
        if operation not in self.operations:
            return
        ab = self.posterior(language)[operation]
        ab[0] += reward
        ab[1] += 1.0 - reward


def _difficulty(scores: Iterable[Score]) -> float | None:
    values = [s.value for s in scores if s.metric == "difficulty" and s.value is not None]
    return sum(values) / len(values) if values else None


class AdaptiveOperations:
    """The engine's side: decisions stored as they are made, read back on resume; rewards as steps finish."""

    def __init__(self, store: "Store", run_id: str, operations: Iterable[str], random_seed: int):
        self.store, self.run_id = store, run_id
        self.sampler = ThompsonSampler(operations, random_seed)
        self.decided: dict[str, dict[str, Any]] = {}
        self.rewarded: set[str] = set()
        self._difficulty: dict[str, float | None] = {}
        self._scoring: dict[str, asyncio.Future] = {}
        for row in store.op_decisions(run_id):
            self.decided[row["node_id"]] = row
            if row["reward"] is not None:  # a failed step has none: it is retried on resume and counted then
                self.rewarded.add(row["node_id"])
                self.sampler.update(row["language"], row["operation"], row["reward"])
        self.seq = max((r["seq"] for r in self.decided.values()), default=-1) + 1

    # -- choices ------------------------------------------------------------------------------------
    def choose(self, node_id: str, language: str) -> str:
        """The stored operation of a decided node; otherwise a new decision, stored before the step's calls."""
        if node_id in self.decided:
            return self.decided[node_id]["operation"]
        d = self.sampler.choose(node_id, language)
        row = {"node_id": node_id, "run_id": self.run_id, "seq": self.seq, "language": language,
               "operation": d.operation, "posterior": d.posterior, "draws": d.draws, "reward": None,
               "reward_detail": None, "created_at": time.time()}
        self.seq += 1
        self.decided[node_id] = row
        self.store.submit("add_op_decision", row)
        return d.operation

    # -- rewards ------------------------------------------------------------------------------------
    def expect_scores(self, node_ids: Iterable[str]) -> None:
        """Nodes (seeds) being scored in this session: a child's reward waits for its parent's difficulty."""
        loop = asyncio.get_running_loop()
        for nid in node_ids:
            self._scoring.setdefault(nid, loop.create_future())

    def note_scores(self, node_id: str, scores: Iterable[Score]) -> None:
        self._difficulty[node_id] = _difficulty(scores)
        waiting = self._scoring.get(node_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(self._difficulty[node_id])

    async def difficulty_of(self, node: Node) -> float | None:
        if node.id in self._difficulty:
            return self._difficulty[node.id]
        waiting = self._scoring.get(node.id)
        if waiting is not None:
            return await waiting
        stored = _difficulty(self.store.scores(node_id=node.id))
        self._difficulty[node.id] = stored
        return stored

    async def observe(self, node: Node, parent: Node, scores: Iterable[Score] | None = None) -> None:
        """Update the posterior with a finished step (once per decided node; stored scores when `scores` is None)."""
        if node.id not in self.decided or node.id in self.rewarded:
            if scores is not None:
                self.note_scores(node.id, scores)
            return
        if scores is None:
            scores = self.store.scores(node_id=node.id)
        self.note_scores(node.id, scores)
        reward, detail = reward_for(node.status, self._difficulty[node.id], await self.difficulty_of(parent))
        row = self.decided[node.id]
        if reward is not None:
            self.rewarded.add(node.id)
            self.sampler.update(row["language"], row["operation"], reward)
        row["reward"], row["reward_detail"] = reward, detail
        self.store.submit("set_op_reward", node.id, reward, detail)

    async def while_scoring(self, node_id: str, scoring: Any) -> None:
        """Await `scoring` (a seed's answer and scores); whatever happens, children waiting for the seed's
        difficulty go on (with none when the scoring stopped or failed)."""
        try:
            await scoring
        finally:
            waiting = self._scoring.get(node_id)
            if waiting is not None and not waiting.done():
                waiting.set_result(self._difficulty.get(node_id))
