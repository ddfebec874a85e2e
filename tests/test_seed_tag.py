"""Tagging seeds (evolab.seeds.craft.tag_seeds): structured output with the set's skills as an enum, free-text
replies in English and Korean, proposed new skills, unreadable replies left untagged; accepting tags."""
from __future__ import annotations

import asyncio
import json

import pytest
from conftest import STUB_KEY_ENV

from evolab.llm.client import LLMClient
from evolab.llm.openai_backend import OpenAICompatibleBackend
from evolab.schema import Seed
from evolab.seeds import craft as seedcraft
from evolab.store import Store
from evolab.testing.stub_server import StubServer
from evolab.text.reading import NEW_SKILL, tag_kind
from evolab.text.replies import read_tag

SEEDS = [
    Seed("Calculate compound interest on $1,000 at 5% for 3 years.", skill="math", difficulty=3, language="en"),
    Seed("Write a haiku about autumn.", skill="writing", difficulty=2, language="en"),
    Seed("Prove that the square root of 2 is irrational.", language="en"),  # no tags
    Seed("연말정산에서 세액공제를 설명하세요.", skill="writing", language="ko"),  # no difficulty
    Seed("Draft a privacy policy for a mobile banking app.", difficulty=6, language="en"),  # no skill
]


def tag_reply(messages, purpose):
    """A model that tags: JSON when the request asked for it (the stub passes the schema's purpose only, so the
    prompt decides), else two labelled lines; Korean prompts get Korean labels."""
    if purpose == "probe":
        return '{"answer": 5}'
    prompt = messages[0]["content"]
    if "square root" in prompt:
        return json.dumps({"skill": "math", "new_skill": "", "difficulty": 7})
    if "연말정산" in prompt:
        return "스킬: writing\n난이도: 5"
    if "privacy policy" in prompt:
        return json.dumps({"skill": NEW_SKILL, "new_skill": "legal drafting", "difficulty": 8})
    return "Skill: math\nDifficulty: 4"


def client_for(stub, store, structured="auto"):
    return LLMClient(OpenAICompatibleBackend(model="gpt-4o-mini", base_url=stub.base_url, api_key_env=STUB_KEY_ENV,
                                             timeout_s=5, max_retries=1), store, concurrency=4, structured=structured)


def tag(stub, store, seeds, **kw):
    async def go():
        client = client_for(stub, store, kw.pop("structured", "auto"))
        try:
            return await seedcraft.tag_seeds(client, seeds, **kw)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_only_untagged_seeds_are_asked_and_only_missing_tags_proposed(tmp_path):
    with StubServer(handler=tag_reply) as stub:
        store = Store(tmp_path / "t.db")
        proposals = tag(stub, store, SEEDS)
        asked = stub.chat_requests("tag")
    assert [p.index for p in proposals] == [2, 3, 4]
    assert len(asked) == 3
    by = {p.index: p for p in proposals}
    assert (by[2].skill, by[2].difficulty, by[2].new_skill) == ("math", 7, False)
    assert (by[3].skill, by[3].difficulty) == (None, 5)  # it has a skill: only the difficulty is proposed
    assert (by[4].skill, by[4].new_skill, by[4].difficulty) == ("legal drafting", True, None)
    # The structured request carried the set's skills as an enum, plus "other" for a new one.
    body = asked[0]["body"]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["skill"]["enum"] == ["writing", "math", NEW_SKILL]
    assert schema["properties"]["difficulty"]["enum"] == list(range(1, 11))
    # The paper's difficulty question, in the seed's language.
    prompts = {p["body"]["messages"][0]["content"].split("\n")[0] for p in asked}
    assert any(p.startswith("Rate how difficult and complex the following question is") for p in prompts)
    assert any(p.startswith("다음 질문이 AI 어시스턴트에게 얼마나 어렵고 복잡한지") for p in prompts)
    assert {c.purpose for c in store.calls()} >= {"tag"}


def test_free_text_replies_when_structured_output_is_off(tmp_path):
    with StubServer(handler=tag_reply) as stub:
        proposals = tag(stub, Store(tmp_path / "f.db"), SEEDS, structured="off")
        asked = stub.chat_requests("tag")
        assert asked and all("response_format" not in r["body"] for r in asked)
    by = {p.index: p for p in proposals}
    assert by[2].skill == "math" and by[2].difficulty == 7  # a JSON reply unasked is still read
    assert by[3].difficulty == 5  # "난이도: 5"


def test_an_unreadable_reply_leaves_the_seed_untagged_with_the_reason(tmp_path):
    def vague(messages, purpose):
        return '{"answer": 5}' if purpose == "probe" else "It depends on who is asking, honestly."

    with StubServer(handler=vague) as stub:
        proposals = tag(stub, Store(tmp_path / "u.db"), SEEDS, structured="off")
        assert stub.count("tag") == 6  # asked once more, stricter, then given up
    assert sorted(p.index for p in proposals) == [2, 3, 4]  # the three seeds that lack a tag
    assert all(p.skill is None and p.difficulty is None for p in proposals)
    assert all("unreadable" in p.detail and "It depends" in p.detail for p in proposals)
    frame = seedcraft.proposals_frame(SEEDS, proposals)
    assert not frame["accept"].any() and set(frame["proposed"]) == {"nothing readable"}


def test_a_set_without_skills_lets_the_model_name_one(tmp_path):
    seeds = [Seed("Explain APR."), Seed("예산표를 만드세요.", language="ko")]
    kind = tag_kind([])
    assert "enum" not in kind.schema["properties"]["skill"]
    with StubServer(handler=lambda m, p: '{"answer": 5}' if p == "probe" else
                    json.dumps({"skill": "personal finance", "new_skill": "", "difficulty": 3})) as stub:
        proposals = tag(stub, Store(tmp_path / "n.db"), seeds)
    assert len(proposals) == len(seeds)
    assert all(p.skill == "personal finance" and p.new_skill and p.difficulty == 3 for p in proposals)


@pytest.mark.parametrize("text, skills, expected", [
    ('{"skill": "Math", "new_skill": "", "difficulty": 6}', ["math"], {"skill": "math", "new_skill": False, "difficulty": 6}),
    ('{"skill": "other", "new_skill": "세무", "difficulty": "8/10"}', ["math"], {"skill": "세무", "new_skill": True, "difficulty": 8}),
    ("**Skill:** Writing\n**Difficulty:** 7 out of 10", ["writing"], {"skill": "writing", "new_skill": False, "difficulty": 7}),
    ("스킬: 회계\n난이도: 9점", ["회계"], {"skill": "회계", "new_skill": False, "difficulty": 9}),
    ("Skill: coding", [], {"skill": "coding", "new_skill": True, "difficulty": None}),
    ("Difficulty: 6.5", ["x"], None),  # a hedge between two whole numbers is not a difficulty
    ("Difficulty: 12", ["x"], None),  # out of range is not clamped
    ("I cannot say.", ["x"], None),
    ('{"skill": "other", "new_skill": "", "difficulty": 4}', ["x"], {"skill": None, "new_skill": False, "difficulty": 4}),
])
def test_tag_reader(text, skills, expected):
    assert read_tag(text, skills) == expected


def test_accepting_and_changing_proposals():
    proposals = [seedcraft.TagProposal(2, "math", False, 7, ""), seedcraft.TagProposal(4, "legal drafting", True, None, "")]
    frame = seedcraft.proposals_frame(SEEDS, proposals)
    assert list(frame["row"]) == [2, 4] and list(frame["new skill"]) == [False, True]
    assert frame.loc[1, "difficulty"] == 6  # the seed's own difficulty shown beside the proposed skill
    frame.loc[1, "skill"] = "legal"  # the person changes the proposal
    frame.loc[0, "accept"] = False  # and rejects another
    out = seedcraft.apply_tags(SEEDS, frame)
    assert out[2] == SEEDS[2] and out[4].skill == "legal" and out[4].difficulty == 6
    assert SEEDS[4].skill is None  # the input list is not changed in place
    frame.loc[1, "difficulty"] = 11
    with pytest.raises(seedcraft.SeedcraftError, match="Row 4: difficulty 11 is outside 1-10"):
        seedcraft.apply_tags(SEEDS, frame)


def test_accepting_a_grown_seeds_proposed_tags_clears_the_mark():
    grown = Seed("Price a bond.", skill="insurance", difficulty=7.5,
                 source={"kind": "generated", "proposed": ["skill", "difficulty"]})
    frame = seedcraft.proposals_frame([grown], [seedcraft.TagProposal(0, None, False, None, "")])
    frame.loc[0, ["difficulty", "accept"]] = [8, True]
    out = seedcraft.apply_tags([grown], frame)
    assert out[0].difficulty == 8 and out[0].source == {"kind": "generated"}
