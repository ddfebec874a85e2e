"""The Seeds page's Coverage, Grow and Tag panels (AppTest): the coverage map and its gaps, "Grow here" with live
progress from the store, adding the kept seeds to the table, proposing tags and accepting them."""
from __future__ import annotations

import dataclasses
import json

from streamlit.testing.v1 import AppTest
from test_app import APP, _app_env, _fresh_resources, _navigation_mode, button, clean, stub_module, stub_settings, texts  # noqa: F401
from test_seed_grow import RealisticGrowModel
from test_seed_tag import tag_reply

from evolab.app import worker
from evolab.seeds import craft as seedcraft
from evolab.seeds.files import seeds_to_records
from evolab.testing.stub_server import StubServer


class CraftModel:
    """Grow replies from a RealisticGrowModel of this test's own (in the order of the requests, not following the
    stub's port), tag replies from test_seed_tag's model."""

    def __init__(self):
        self.grow = RealisticGrowModel()

    def __call__(self, messages, purpose):
        return self.grow(messages, purpose) if purpose in ("grow", "probe") else tag_reply(messages, purpose)


def seeds_page(db: str, stub: StubServer) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["settings"] = stub_settings(db, stub)
    at.run()
    at.selectbox(key="seed_example").set_value("general")
    button(at, "Load example").click().run()
    return clean(at)


def replace_table(at: AppTest, seeds) -> None:
    """The table as if the person had edited it to these seeds (AppTest cannot type into a data editor)."""
    at.session_state["seed_records"] = seeds_to_records(seeds)
    at.session_state["seeds"] = seeds
    at.session_state["seed_table_version"] = at.session_state["seed_table_version"] + 1
    at.run()
    assert at.session_state["seeds"] == seeds


def wait(job) -> None:
    assert job is not None
    job.thread.join(60)
    assert not job.alive


def test_coverage_map_and_grow_here_then_accept_the_proposed_tags(tmp_path):
    db = str(tmp_path / "app.db")
    with StubServer(handler=CraftModel()) as stub:
        at = seeds_page(db, stub)
        before = len(at.session_state["seeds"])
        charts = at.get("plotly_chart")
        assert len(charts) == 1, "the coverage map is drawn"
        chart = json.loads(charts[0].proto.spec)
        assert chart["data"][0]["type"] == "heatmap" and {t.get("name") for t in chart["data"]} >= {"empty"}
        at.number_input(key="seed_cov_thin").set_value(3).run()
        cells = at.selectbox(key="seed_cov_cell").options
        assert cells and all("×" in c for c in cells)
        chosen = cells[0]
        skill = chosen.split(" × ")[0]
        at.number_input(key="seed_cov_n").set_value(3)
        button(at, "Grow here").click().run()
        wait(worker.grow_job_for(db))
        at.run()
        clean(at)
        bars = [p.proto.text for p in at.get("progress")]
        assert any(b.startswith("finished: 3 of 3 new seeds kept") for b in bars), bars
        prompt = stub.chat_requests("grow")[0]["body"]["messages"][-1]["content"]
        assert f'skill "{skill}"' in prompt
        add = [b for b in at.button if b.label.startswith("Add ") and b.label.endswith("kept seeds to the table")]
        assert add, [b.label for b in at.button]
        add[0].click().run()
        clean(at)
        seeds = at.session_state["seeds"]
        assert len(seeds) == before + 3
        new = seeds[before:]
        assert all(s.skill == skill and s.source["proposed"] == ["skill", "difficulty"] for s in new)
        # The Tag tab offers the grown seeds' proposed tags; accepting them makes them the set's own.
        assert "3 grown seed(s) carry proposed tags" in texts(at)
        button(at, "Accept all").click().run()
        clean(at)
        accepted = at.session_state["seeds"][before:]
        assert len(accepted) == 3
        assert all(s.skill == skill and "proposed" not in (s.source or {}) for s in accepted)
        assert all(s.source["kind"] == "generated" for s in accepted)


def test_grow_refuses_a_set_of_two(tmp_path):
    db = str(tmp_path / "two.db")
    with StubServer(handler=CraftModel()) as stub:
        at = seeds_page(db, stub)
        replace_table(at, at.session_state["seeds"][:2])
        button(at, "Grow").click().run()
        assert any("at least 3 seeds" in e.value for e in at.error)
        assert stub.count("grow") == 0


def test_propose_tags_and_apply_the_accepted_ones(tmp_path):
    db = str(tmp_path / "tag.db")
    with StubServer(handler=CraftModel()) as stub:
        at = seeds_page(db, stub)
        seeds = at.session_state["seeds"]
        seeds = [dataclasses.replace(s, skill=None) for s in seeds[:2]] + \
            [dataclasses.replace(s, difficulty=None) for s in seeds[2:3]] + seeds[3:]
        replace_table(at, seeds)
        untagged = [i for i, s in enumerate(at.session_state["seeds"]) if seedcraft.needs_tags(s)]
        assert untagged
        button(at, "Propose tags").click().run()
        wait(worker.tag_job_for(db))
        at.run()
        clean(at)
        assert stub.count("tag") == len(untagged)
        button(at, "Apply accepted").click().run()
        clean(at)
        tagged = at.session_state["seeds"]
        assert all(tagged[i].skill and tagged[i].difficulty is not None for i in untagged)
        assert "tagged (" in at.session_state["seed_source"]
