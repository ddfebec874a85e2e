"""The eliminator as a cascade of rule objects, the novelty filter that does not eat evolution, and the
quality filter's missing scores."""
from __future__ import annotations

from collections import Counter

import pytest
from conftest import openai_backend_for

from evolab.app import support as app_support
from evolab.engine import eliminator, pipeline
from evolab.engine.eliminator import RESPONSE, Rule, StepContext, Verdict
from evolab.llm import FakeBackend, scripted_reply
from evolab.llm.fake import given_prompt
from evolab.schema import RunConfig, Seed
from evolab.testing.stub_server import StubServer

SEEDS = [
    Seed("Explain why the sky is blue."),
    Seed("Write a short poem about the sea."),
    Seed("Give three tips for learning a new language."),
]


class MentionsPrice(Rule):
    """A custom rule: drop answers that quote a price (a stand-in for any project-specific check)."""

    id = "quotes_price"
    languages = ("en",)
    needs = RESPONSE

    async def check(self, ctx: StepContext) -> Verdict:
        bad = "$" in (ctx.node.response or "")
        return Verdict(self.id, not bad, "quotes a price" if bad else "no price")


@pytest.fixture
def custom_rule():
    rule = eliminator.register_rule(MentionsPrice())
    yield rule
    eliminator.unregister_rule(rule)


def test_the_cascade_is_ordered_cheap_first_and_describes_itself():
    rows = eliminator.describe_cascade()
    ids = [r["id"] for r in rows]
    assert ids.index("prompt_leak") < ids.index("refusal")  # instruction checks before the answer's
    llm = [i for i, r in enumerate(rows) if r["uses_llm"]]
    cheap_after_answer = [i for i, r in enumerate(rows) if r["needs"] == RESPONSE and not r["uses_llm"]]
    assert llm and max(cheap_after_answer) < min(llm)  # the LLM judge runs after every cheap check
    assert rows[-1]["needs"] == "scores"
    assert all(r["doc"] for r in rows)


def test_a_custom_rule_takes_one_class_and_one_line_and_its_verdicts_are_stored_and_shown(custom_rule, store):
    def handler(messages, purpose):
        if purpose == "respond" and "poem" in messages[-1]["content"]:
            return "It costs $5 to print this poem, and here it is in full with many words " * 3
        return scripted_reply(messages, purpose)

    with StubServer(handler=handler) as stub:
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, rounds=1, concurrency=4)
        run_id = pipeline.create_run(store, SEEDS, config)
        pipeline.run_sync(store, run_id, backend=openai_backend_for(stub))
    children = [n for n in store.nodes(run_id) if n.round == 1]
    dropped = [n for n in children if n.rule == "quotes_price"]
    assert len(dropped) == 1 and dropped[0].status == "eliminated" and "poem" in dropped[0].instruction
    assert dropped[0].detail == "quotes a price"
    # Stored for every child, shown in the node view the step-through and lineage pages draw.
    for n in children:
        detail = app_support.node_detail(store, n.id)
        row = detail.verdicts[detail.verdicts["rule"] == "quotes_price"]
        assert len(row) == 1 and bool(row["passed"].iloc[0]) == (n.rule != "quotes_price")
    # A failed custom rule stops the cascade: the rules after it (the LLM equality judge) never ran.
    verdicts = app_support.node_detail(store, dropped[0].id).verdicts
    assert "quotes_price" in set(verdicts["rule"])
    assert "gpt-4o-mini" not in set(verdicts["judge"])  # no LLM judge verdict for the dropped child
    kept = next(n for n in children if n.status == "kept")
    assert "gpt-4o-mini" in set(app_support.node_detail(store, kept.id).verdicts["judge"])


def test_a_custom_rule_can_be_switched_off_by_id(custom_rule, store):
    from evolab.cli.main import build_parser
    from evolab.cli.runs import config_from_args

    args = build_parser().parse_args(["run", "seeds.jsonl", "--rule-off", "quotes_price"])
    cfg = config_from_args(args)
    assert "quotes_price" in cfg.rules.off and not custom_rule.enabled(cfg)
    with pytest.raises(Exception, match="not a rule"):
        config_from_args(build_parser().parse_args(["run", "s.jsonl", "--rule-off", "no_such_rule"]))


def test_a_rule_skips_languages_it_does_not_support(custom_rule):
    assert custom_rule.applies_to("en") and not custom_rule.applies_to("ko")
    assert all(r.applies_to("ko") for r in eliminator.CASCADE if r is not custom_rule)


# -- the novelty filter ---------------------------------------------------------------------------------------
LONG_SEEDS = [
    Seed("Explain how a central bank decides whether to raise its policy interest rate, and what data it "
         "watches before and after the decision, for a reader who knows no economics."),
    Seed("Describe how a household should build an emergency fund, how many months of expenses it should hold, "
         "and where the money should be kept so that it stays safe and available."),
    Seed("Compare the total cost of renting and of buying a small apartment over ten years, including the "
         "interest on the loan, maintenance, taxes and the money the down payment could have earned."),
]


def _dedup_run(store, seeds, **cfg):
    config = RunConfig(model="fake", base_url="http://fake", rounds=3, concurrency=8,
                       operation_weights={"constraints": 1.0, "deepen": 1.0, "reasoning": 1.0}, **cfg)
    config.rules.duplicate = True
    run_id = pipeline.create_run(store, seeds, config)
    pipeline.run_sync(store, run_id, backend=FakeBackend())
    return run_id


def test_dedup_never_compares_a_child_with_its_own_ancestors(store):
    # The scripted model's in-depth child keeps every word of its parent and adds a clause: ROUGE-L with the
    # parent is far above 0.7, yet these are real evolutions of distinct seeds.
    run_id = _dedup_run(store, LONG_SEEDS)
    children = [n for n in store.nodes(run_id) if n.round]
    assert Counter(n.status for n in children) == {"kept": 9}


def test_dedup_still_drops_a_child_that_copies_another_lineage(store):
    twin = LONG_SEEDS[0].instruction

    def handler(messages, purpose):
        if purpose == "evolve" and "emergency fund" in given_prompt(messages):
            return "#Rewritten Prompt#:\n" + twin  # lineage B's child copies lineage A's seed
        return scripted_reply(messages, purpose)

    config = RunConfig(model="fake", base_url="http://fake", rounds=1, concurrency=8)
    config.rules.duplicate = True
    run_id = pipeline.create_run(store, LONG_SEEDS, config)
    pipeline.run_sync(store, run_id, backend=FakeBackend(handler=handler))
    dropped = [n for n in store.nodes(run_id) if n.rule == "duplicate"]
    assert len(dropped) == 1 and dropped[0].instruction == twin
    assert "ROUGE-L" in dropped[0].detail


def test_dedup_gives_the_same_tree_whatever_order_lineages_finish_in(tmp_path):
    """Lineages evolve towards the same text; which child is dropped must not depend on which lineage
    happens to finish first (random latencies shuffle the order)."""
    import random

    from evolab.store import Store

    shared = "Write a detailed plan for saving money on groceries each week, with a budget table."

    def handler(messages, purpose):
        if purpose == "evolve":
            extra = " Add a shopping list." if "sea" in given_prompt(messages) else ""
            return "#Rewritten Prompt#:\n" + shared + extra
        return scripted_reply(messages, purpose)

    def tree(latency_seed: int) -> list[tuple]:
        rng = random.Random(latency_seed)
        db = Store(tmp_path / f"run{latency_seed}.db")
        config = RunConfig(model="fake", base_url="http://fake", rounds=2, concurrency=8, random_seed=3)
        config.rules.duplicate = True
        config.rules.off_topic = False  # every lineage is made to write the same text, whatever its seed's subject
        run_id = pipeline.create_run(db, SEEDS, config)
        pipeline.run_sync(db, run_id, backend=FakeBackend(handler=handler, latency=lambda: rng.uniform(0, 0.03)))
        seed_index = {pipeline.seed_id(run_id, i): i for i in range(len(SEEDS))}
        out = sorted((n.round, seed_index[n.root_id], n.status, n.rule or "") for n in db.nodes(run_id) if n.round)
        db.close()
        return out

    trees = [tree(s) for s in range(4)]
    assert all(t == trees[0] for t in trees[1:])
    # Round 1 compares with the seeds only, so the identical children of two lineages are both kept; in
    # round 2 a child that copies another lineage's round-1 node is dropped.
    assert [status for r, _, status, _ in trees[0] if r == 1] == ["kept"] * 3
    assert any(rule == "duplicate" for r, _, _, rule in trees[0] if r == 2)


# -- the quality filter ------------------------------------------------------------------------------------
def test_quality_filter_fails_a_missing_or_unreadable_score_with_its_own_detail(store):
    def handler(messages, purpose):
        return "I would need more context." if purpose == "quality" else scripted_reply(messages, purpose)

    config = RunConfig(model="fake", base_url="http://fake", rounds=1, concurrency=4)
    config.rules.quality_filter, config.rules.quality_min = True, 3.0
    run_id = pipeline.create_run(store, SEEDS, config)
    pipeline.run_sync(store, run_id, backend=FakeBackend(handler=handler))
    children = [n for n in store.nodes(run_id) if n.round]
    assert children and all(n.status == "eliminated" and n.rule == "low_quality" for n in children)
    assert all(n.detail.startswith("no readable quality score") for n in children)


def test_check_quality_on_values():
    assert not eliminator.check_quality(4.0).passed
    assert eliminator.check_quality(4.5).passed
    missing = eliminator.check_quality(None, why_missing="unreadable reply")
    assert not missing.passed and "unreadable reply" in missing.detail
