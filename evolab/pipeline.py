"""A run: rounds of evolve -> eliminate -> respond -> eliminate -> score, with the paper's semantics.

Each round evolves every live instruction of a lineage once (K times with fan-out K) with a sampled
operation; a kept child joins the pool, and when all children of a node are eliminated the node stays
in the pool for the next round (WizardLM section 3.3). Each seed's lineage advances on its own, so the
one concurrency limit of the client stays full from start to end (no barrier between seeds).

Node ids and operation choices are derived from (run, parent, round, slot) and the random seed, so a
resumed run rebuilds the same tree, and finished steps found in the store are reused without a call.
"""
from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from . import eliminator, evolver, responder, scoring
from .complexity import complexity_scores
from .llm.base import Backend, BudgetExceeded, LLMError
from .llm.client import LLMClient, make_backend
from .operations import sample_operation
from .schema import ELIMINATED, FAILED, KEPT, PENDING, SEED, Node, RunConfig, Score, Seed
from .seeds import detect_language
from .store import Store

ProgressCallback = Callable[[dict[str, Any]], None]
REUSABLE = (KEPT, ELIMINATED)  # a resumed run retries failed and pending steps
# After this many steps in a row fail on the endpoint (after the client's own retries), the run stops
# as failed instead of marking every remaining node llm_error; fix the endpoint and resume.
MAX_FAILED_STEPS_IN_A_ROW = 10


class RunStopped(Exception):
    """Raised inside a lineage when the user stopped the run or the budget ran out."""


@dataclass
class StepResult:
    node: Node
    verdicts: list[eliminator.Verdict] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    reused: bool = False


def child_id(run_id: str, parent_id: str, round_: int, slot: int) -> str:
    return hashlib.sha1(f"{run_id}|{parent_id}|{round_}|{slot}".encode()).hexdigest()[:16]


def seed_id(run_id: str, index: int) -> str:
    return hashlib.sha1(f"{run_id}|seed|{index}".encode()).hexdigest()[:16]


def run_language(config: RunConfig, seed: Seed) -> str:
    if config.language in ("en", "ko"):
        return config.language
    return seed.language or detect_language(seed.instruction + " " + seed.input)


def verdict_score(node_id: str, v: eliminator.Verdict) -> Score:
    """Every rule's verdict is stored as a score row `rule:<id>` (1 passed, 0 failed) with its detail."""
    return Score(node_id, f"rule:{v.rule}", 1.0 if v.passed else 0.0, v.judge, v.detail[:500])


def expected_steps(n_seeds: int, rounds: int, fanout: int) -> int:
    """Child steps if every child were kept (with K = 1 the pool never grows, so this is exact)."""
    return n_seeds * sum(fanout ** r for r in range(1, rounds + 1))


class Engine:
    def __init__(self, store: Store, run_id: str, client: LLMClient, config: RunConfig,
                 progress: ProgressCallback | None = None, stop_event: threading.Event | None = None):
        self.store, self.run_id, self.client, self.config = store, run_id, client, config
        self.progress = progress
        self.stop_event = stop_event or threading.Event()
        self.stop_reason: str | None = None
        self.failed_in_a_row = 0
        self.last_error: str | None = None
        self.counts: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()
        self.started = time.time()
        self.kept_instructions: list[str] = [n.instruction for n in store.nodes(run_id)
                                             if n.status in (KEPT, SEED)]
        self.expected = 0

    # -- one step ---------------------------------------------------------------------------------
    def _check_stop(self) -> None:
        if self.stop_reason is None and self.stop_event.is_set():
            self.stop_reason = "stopped"
        if self.stop_reason:
            raise RunStopped(self.stop_reason)

    async def evolve_child(self, parent: Node, round_: int, slot: int, operation: str | None = None,
                           reuse: bool = True) -> StepResult:
        """Evolve `parent` once; eliminate, respond, score; store the child when it is done."""
        cfg, rules = self.config, self.config.rules
        node_id = child_id(self.run_id, parent.id, round_, slot)
        if reuse:
            existing = self.store.get_node(node_id)
            if existing is not None and (existing.status in REUSABLE or
                                         (existing.status == FAILED and self._moved_on(parent, round_))):
                self._count(existing)
                return StepResult(existing, reused=True)
        self._check_stop()
        rng = random.Random(f"{cfg.random_seed}|{parent.instruction}|{parent.input}|{round_}|{slot}")
        op = operation or sample_operation(cfg.operation_weights, rng)
        salt = f"{cfg.random_seed}|{round_}|{slot}"
        node = Node(id=node_id, run_id=self.run_id, parent_id=parent.id, root_id=parent.root_id, round=round_,
                    operation=op, instruction="", input=parent.input, status=PENDING, skill=parent.skill,
                    seed_difficulty=parent.seed_difficulty, language=parent.language)
        verdicts: list[eliminator.Verdict] = []
        scores: list[Score] = []
        try:
            evo = await evolver.evolve(self.client, parent.instruction, parent.input, op, language=node.language,
                                       rng=rng, temperature=cfg.temperature_evolve,
                                       max_tokens=cfg.max_tokens_evolve, node_id=node_id, salt=salt)
            node.instruction, node.input = evo.instruction, evo.input
            node.prompt, node.raw_output = evo.prompt, evo.raw_output
            node.template, node.template_version = evo.template.name, evo.template.version

            # Cheap checks on the instruction first.
            if rules.no_new_information:
                verdicts.append(eliminator.check_unchanged(parent.instruction, node.instruction,
                                                           near_identical_ratio=rules.near_identical_ratio,
                                                           parent_input=parent.input, child_input=node.input))
            if rules.prompt_leak:
                verdicts.append(eliminator.check_prompt_leak(node.instruction, node.language))
            if node.instruction:
                scores += complexity_scores(node)
            if not self._failed(verdicts):
                node.response = await responder.respond(
                    self.client, node.instruction, node.input, language=node.language,
                    temperature=cfg.temperature_respond, max_tokens=cfg.max_tokens_respond, node_id=node_id,
                    salt=f"{cfg.random_seed}")
                if rules.refusal:
                    verdicts.append(eliminator.check_refusal(node.response, node.language,
                                                             max_words=rules.refusal_max_words))
                if rules.empty_response:
                    verdicts.append(eliminator.check_empty_response(node.response, node.language))
            # The LLM equality judge only where the cheap checks passed.
            if not self._failed(verdicts) and rules.no_new_information and rules.use_equal_judge:
                verdicts.append(await eliminator.judge_equal(
                    self.client, parent.instruction, node.instruction, language=node.language,
                    max_tokens=16, node_id=node_id))
            if not self._failed(verdicts) and rules.duplicate:
                verdicts.append(eliminator.check_duplicate(node.instruction, self.kept_instructions,
                                                           rouge_l_max=rules.rouge_l_max))
            if not self._failed(verdicts):
                scores += await self._llm_scores(node)
                if rules.quality_filter:
                    quality = next((s.value for s in scores if s.metric == "quality"), None)
                    verdicts.append(eliminator.check_quality(quality, minimum=rules.quality_min))
            failed = self._failed(verdicts)
            node.status = ELIMINATED if failed else KEPT
            node.rule, node.detail = (failed.rule, failed.detail) if failed else (None, None)
        except BudgetExceeded:
            self.stop_reason = "budget"
            raise RunStopped("budget")
        except LLMError as e:
            node.status, node.rule, node.detail = FAILED, "llm_error", str(e)[:500]
            self.failed_in_a_row += 1
            self.last_error = str(e)
            if self.failed_in_a_row >= MAX_FAILED_STEPS_IN_A_ROW and self.stop_reason is None:
                self.stop_reason = "endpoint"
        else:
            self.failed_in_a_row = 0
        scores += [verdict_score(node_id, v) for v in verdicts]
        self.store.record_step(node, scores)
        if node.status == KEPT:
            self.kept_instructions.append(node.instruction)
        self._count(node)
        return StepResult(node, verdicts, scores)

    def _moved_on(self, parent: Node, round_: int) -> bool:
        """The lineage already went on from `parent` after round `round_` (a later child of it was kept or
        eliminated): retrying this failed step now would fork the tree, so the failure stays history."""
        return any(c.round > round_ and c.status in REUSABLE for c in self.store.children(parent.id))

    @staticmethod
    def _failed(verdicts: list[eliminator.Verdict]) -> eliminator.Verdict | None:
        return next((v for v in verdicts if not v.passed), None)

    async def _llm_scores(self, node: Node) -> list[Score]:
        cfg, jobs = self.config, []
        if cfg.score_difficulty:
            jobs.append(scoring.score_difficulty(self.client, node.instruction, node.input, language=node.language,
                                                 node_id=node.id))
        if cfg.score_quality and node.response is not None:
            jobs.append(scoring.score_quality(self.client, node.instruction, node.input, node.response,
                                              language=node.language, max_tokens=cfg.max_tokens_judge,
                                              node_id=node.id))
        return list(await asyncio.gather(*jobs))

    async def finish_seed(self, seed: Node) -> None:
        """Answer and score a seed, as the round-0 baseline of the drift figures."""
        if seed.response is not None:
            return
        self._check_stop()
        try:
            seed.response = await responder.respond(
                self.client, seed.instruction, seed.input, language=seed.language,
                temperature=self.config.temperature_respond, max_tokens=self.config.max_tokens_respond,
                node_id=seed.id, salt=f"{self.config.random_seed}")
            scores = complexity_scores(seed) + await self._llm_scores(seed)
        except BudgetExceeded:
            self.stop_reason = "budget"
            raise RunStopped("budget")
        except LLMError as e:
            seed.detail = f"seed answer failed: {e}"[:500]
            scores = complexity_scores(seed)
        self.store.record_step(seed, scores)

    # -- lineages and the run ----------------------------------------------------------------------
    async def run_lineage(self, seed: Node, until_round: int) -> None:
        pool = [seed]
        for round_ in range(1, until_round + 1):
            results = await asyncio.gather(*(self.evolve_child(parent, round_, slot)
                                             for parent in pool for slot in range(self.config.fanout)))
            next_pool: list[Node] = []
            for i, parent in enumerate(pool):
                kids = results[i * self.config.fanout:(i + 1) * self.config.fanout]
                kept = [r.node for r in kids if r.node.status == KEPT]
                next_pool += kept or [parent]  # an eliminated child leaves its parent in the pool
            pool = next_pool

    def seed_nodes(self, seeds: list[Seed]) -> list[Node]:
        """The round-0 nodes, created in one transaction the first time."""
        nodes = []
        for i, s in enumerate(seeds):
            sid = seed_id(self.run_id, i)
            nodes.append(self.store.get_node(sid) or Node(
                id=sid, run_id=self.run_id, parent_id=None, root_id=sid, round=0, operation="seed",
                instruction=s.instruction, input=s.input or "", status=SEED, skill=s.skill,
                seed_difficulty=s.difficulty, language=run_language(self.config, s)))
        with self.store.transaction() as c:
            for n in nodes:
                self.store._upsert_node(c, n)
        return nodes

    async def run(self, seeds: list[Seed], until_round: int | None = None) -> str:
        until = min(until_round or self.config.rounds, self.config.rounds)
        self.store.set_run_status(self.run_id, "running")
        self.expected = expected_steps(len(seeds), until, self.config.fanout)
        roots = self.seed_nodes(seeds)
        # The novelty filter compares with the seeds too, in a fresh run as in a resumed one.
        self.kept_instructions += [r.instruction for r in roots if r.instruction not in self.kept_instructions]
        jobs = [self.run_lineage(r, until) for r in roots]
        if self.config.score_seeds:
            jobs += [self.finish_seed(r) for r in roots]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, RunStopped)]
        if errors:
            self.store.set_run_status(self.run_id, "failed", f"{type(errors[0]).__name__}: {errors[0]}")
            raise errors[0]
        if self.stop_reason == "endpoint":
            self.store.set_run_status(self.run_id, "failed",
                                      f"Stopped after {self.failed_in_a_row} failed steps in a row; last error: "
                                      f"{self.last_error}. Fix the endpoint, then resume.")
            self._report(final=True)
            return "failed"
        if self.stop_reason == "budget":
            status = "budget"
        elif self.stop_reason:
            status = "stopped"
        else:
            status = "paused" if until < self.config.rounds else "finished"
        self.store.set_run_status(self.run_id, status, None)
        self._report(final=True)
        return status

    # -- progress -------------------------------------------------------------------------------
    def _count(self, node: Node) -> None:
        self.counts[node.status] += 1
        if node.rule:
            self.rules[node.rule] += 1
        self._report()

    def _report(self, final: bool = False) -> None:
        if self.progress is None:
            return
        done = sum(self.counts.values())
        self.progress({
            "done": done, "expected": max(self.expected, done), "by_status": dict(self.counts),
            "by_rule": dict(self.rules), "calls": self.client.calls_made, "cost_usd": self.client.spent_usd,
            "elapsed_s": time.time() - self.started, "final": final,
        })


# -- entry points -----------------------------------------------------------------------------------
def create_run(store: Store, seeds: list[Seed], config: RunConfig, name: str | None = None,
               seed_set: str | None = None) -> str:
    if not seeds:
        raise ValueError("A run needs at least one seed.")
    return store.create_run(config, seeds, name=name, seed_set=seed_set)


async def arun(store: Store, run_id: str, *, backend: Backend | None = None,
               progress: ProgressCallback | None = None, stop_event: threading.Event | None = None,
               until_round: int | None = None) -> str:
    """Run (or resume) a stored run. Returns the final status."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"No run {run_id!r} in {store.path}.")
    config: RunConfig = run["config"]
    backend = backend or make_backend(config)
    client = LLMClient(backend, store, run_id=run_id, concurrency=config.concurrency, budget_usd=config.budget_usd)
    engine = Engine(store, run_id, client, config, progress=progress, stop_event=stop_event)
    try:
        if hasattr(backend, "check"):
            await backend.check()
        return await engine.run(run["seeds"], until_round=until_round)
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, asyncio.CancelledError)):
            store.set_run_status(run_id, "stopped", "interrupted")
        raise
    finally:
        await client.aclose()


def run_sync(store: Store, run_id: str, **kwargs: Any) -> str:
    return asyncio.run(arun(store, run_id, **kwargs))


def next_round(store: Store, run_id: str) -> int:
    """The round a stepped batch would run next (1 when nothing was evolved yet)."""
    nodes = store.nodes(run_id)
    return max((n.round for n in nodes), default=0) + 1


# -- interactive stepping ---------------------------------------------------------------------------
async def astep(store: Store, run_id: str, parent_id: str, operation: str | None = None, *,
                backend: Backend | None = None) -> StepResult:
    """Evolve one node once, the way the step-through page does: a new child every call."""
    run = store.get_run(run_id)
    parent = store.get_node(parent_id)
    if run is None or parent is None:
        raise KeyError(f"No run {run_id!r} or node {parent_id!r} in {store.path}.")
    config: RunConfig = run["config"]
    backend = backend or make_backend(config)
    client = LLMClient(backend, store, run_id=run_id, concurrency=config.concurrency, budget_usd=config.budget_usd)
    engine = Engine(store, run_id, client, config)
    round_ = parent.round + 1
    slot = sum(1 for c in store.children(parent_id) if c.round == round_)
    try:
        return await engine.evolve_child(parent, round_, slot, operation=operation, reuse=False)
    finally:
        await client.aclose()


def step_sync(store: Store, run_id: str, parent_id: str, operation: str | None = None, **kwargs: Any) -> StepResult:
    return asyncio.run(astep(store, run_id, parent_id, operation, **kwargs))


def start_interactive(store: Store, seeds: list[Seed], config: RunConfig, name: str = "interactive") -> tuple[str, list[Node]]:
    """A run for stepping by hand: its seed nodes exist, nothing is evolved yet."""
    run_id = create_run(store, seeds, config, name=name)
    engine = Engine(store, run_id, LLMClient(_NoBackend(), None), config)
    nodes = engine.seed_nodes(seeds)
    store.set_run_status(run_id, "interactive")
    return run_id, nodes


def override(store: Store, node_id: str, keep: bool, note: str = "") -> Node:
    """Keep or discard a node by hand, whatever the rules said; the rules' verdicts stay stored."""
    node = store.get_node(node_id)
    if node is None:
        raise KeyError(f"No node {node_id!r}.")
    if node.status == SEED:
        raise ValueError("A seed cannot be kept or discarded.")
    was = f"{node.status}" + (f" ({node.rule})" if node.rule else "")
    node.status = KEPT if keep else ELIMINATED
    node.rule = None if keep else "manual"
    node.detail = f"set by hand (was {was})" + (f": {note}" if note else "")
    store.save_node(node)
    return node


class _NoBackend:
    model = "none"

    async def complete(self, *a: Any, **k: Any):  # pragma: no cover - never called
        raise LLMError("no backend")

    async def aclose(self) -> None:
        return None
