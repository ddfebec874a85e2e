"""A realistic run written straight into a store (no pipeline): known nodes, scores and calls, so the
analysis, figure, judge and report tests can check numbers they can count by hand.

Shape: 4 seeds (one Korean) in round 0; every seed and every kept node of round r gets two children in
round r + 1 (operations cycle through operation_names()); child k (a global counter) is eliminated by
`refusal` when k % 5 == 3, by `no_new_information` when k % 7 == 5, fails with `llm_error` when
k % 11 == 9, else kept. Difficulty rises by a fixed step per operation (`DIFFICULTY_STEP`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from evolab.engine.operations import operation_names
from evolab.schema import LLMCall, Node, RunConfig, Score, Seed
from evolab.store import Store
from evolab.text.complexity import complexity_scores

SEEDS = [
    Seed("Write a short poem about the sea."),
    Seed("Explain how vaccines train the immune system."),
    Seed("서울의 대중교통 체계를 설명하세요.", language="ko"),
    Seed("List three ways to reduce household energy use."),
]
CLAUSES = {
    "constraints": "Use at least three examples and no more than 120 words.",
    "deepen": "Discuss the underlying mechanisms in depth.",
    "concretize": "Focus on a coastal town in Norway.",
    "reasoning": "Explain your reasoning step by step.",
    "complicate_input": "Use the table given as input.",
    "breadth": "Also consider a completely different audience.",
}
CLAUSES_KO = {
    "constraints": "반드시 세 가지 이상의 예를 포함하세요.",
    "deepen": "그 원리를 깊이 있게 다루세요.",
    "concretize": "부산의 경우에 집중하세요.",
    "reasoning": "단계별로 이유를 설명하세요.",
    "complicate_input": "입력으로 주어진 표를 사용하세요.",
    "breadth": "전혀 다른 독자도 고려하세요.",
}
DIFFICULTY_STEP = {"constraints": 1.0, "deepen": 2.0, "concretize": 0.5, "reasoning": 1.5,
                   "complicate_input": 1.0, "breadth": -1.0}
COST = {"evolve": 0.001, "respond": 0.002, "difficulty": 0.0005, "quality": 0.0005, "judge": 0.01}


def child_status(k: int) -> tuple[str, str | None]:
    if k % 5 == 3:
        return "eliminated", "refusal"
    if k % 7 == 5:
        return "eliminated", "no_new_information"
    if k % 11 == 9:
        return "failed", "llm_error"
    return "kept", None


@dataclass
class SampleRun:
    run_id: str
    nodes: list[Node] = field(default_factory=list)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # node id -> metric -> value
    calls: list[LLMCall] = field(default_factory=list)


def build_run(store: Store, *, rounds: int = 2, name: str = "sample", seeds: list[Seed] | None = None,
              fanout: int = 2, run_id: str | None = None, t0: float = 1_700_000_000.0,
              response_prefix: str = "Answer") -> SampleRun:
    seeds = seeds or SEEDS
    config = RunConfig(model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1", rounds=rounds, fanout=fanout,
                       random_seed=7)
    run_id = store.create_run(config, seeds, name=name, run_id=run_id)
    out = SampleRun(run_id)
    clock = [t0]

    def tick() -> float:
        clock[0] += 1.0
        return clock[0]

    def add(node: Node, difficulty: float | None, quality: float | None) -> None:
        scores: list[Score] = []
        if node.status != "failed":
            scores += complexity_scores(node)
            if difficulty is not None:
                scores.append(Score(node.id, "difficulty", difficulty, "gpt-4o-mini"))
            if quality is not None:
                scores.append(Score(node.id, "quality", quality, "gpt-4o-mini"))
        calls = []
        if node.round > 0:
            calls.append(LLMCall("evolve", "gpt-4o-mini", 100, 40, 0.5, COST["evolve"], run_id=run_id,
                                 node_id=node.id, created_at=node.created_at))
        if node.status == "failed":
            calls[-1].error = "timeout"
        else:
            calls.append(LLMCall("respond", "gpt-4o-mini", 60, 200, 1.0, COST["respond"], run_id=run_id,
                                 node_id=node.id, created_at=node.created_at))
            calls.append(LLMCall("difficulty", "gpt-4o-mini", 80, 5, 0.2, COST["difficulty"], run_id=run_id,
                                 node_id=node.id, cached=node.round == 2, created_at=node.created_at))
        store.record_step(node, scores=scores, calls=calls)
        out.nodes.append(node)
        out.scores[node.id] = {s.metric: s.value for s in scores}
        out.calls.extend(calls)

    pool: list[tuple[Node, float]] = []
    for i, seed in enumerate(seeds):
        nid = f"{run_id}-s{i}"
        lang = seed.language or "en"
        node = Node(id=nid, run_id=run_id, parent_id=None, root_id=nid, round=0, operation="seed",
                    instruction=seed.instruction, response=f"{response_prefix} to seed {i}.", status="seed",
                    language=lang, created_at=tick())
        diff = 3.0 + i % 3
        add(node, diff, 4.0)
        pool.append((node, diff))
    k = 0
    for r in range(1, rounds + 1):
        next_pool: list[tuple[Node, float]] = []
        for parent, pdiff in pool:
            for _ in range(fanout):
                op = operation_names()[k % len(operation_names())]
                status, rule = child_status(k)
                clauses = CLAUSES_KO if parent.language == "ko" else CLAUSES
                node = Node(id=f"{run_id}-n{k}", run_id=run_id, parent_id=parent.id, root_id=parent.root_id,
                            round=r, operation=op, instruction=f"{parent.instruction} {clauses[op]}",
                            input="| a | b |\n| 1 | 2 |" if op == "complicate_input" else "",
                            response=None if status == "failed" else f"{response_prefix} {k}: " + "detail " * (k % 4),
                            status=status, rule=rule, language=parent.language, created_at=tick())
                diff = pdiff + DIFFICULTY_STEP[op]
                add(node, diff if status != "failed" else None, 3.5 + (k % 3) * 0.5)
                if status == "kept":
                    next_pool.append((node, diff))
                k += 1
        pool = next_pool
    judge_call = LLMCall("judge", "gpt-4o-mini", 300, 20, 0.8, COST["judge"], run_id=run_id, node_id=None,
                         created_at=tick())
    store.add_call(judge_call)
    out.calls.append(judge_call)
    store.set_run_status(run_id, "finished")
    return out


class HashEmbedder:
    """A fast stand-in for a sentence model: hashed bag of words (Hangul by syllable), normalised, so
    texts sharing words are close. Counts what it embeds."""

    name = "test-hash-embedder"

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.texts_embedded = 0
        self.calls = 0

    def encode(self, texts: list[str]):
        import hashlib

        import numpy as np

        from evolab.embeddings.novelty import tokenize

        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for tok in tokenize(t) or ("<empty>",):
                h = int(hashlib.md5(tok.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 64) % 2 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms
