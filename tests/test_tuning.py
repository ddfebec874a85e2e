"""Template tuning on the stub: a wording that makes the model leak the prompt, a revision that does not; tune
measures both on dev runs and picks the revision; placeholders are checked; `--template` makes a run use a
version; two versions are judged pairwise. English and Korean."""
from __future__ import annotations

import json

import pytest
from conftest import STUB_KEY_ENV

from evolab.audit import tuning
from evolab.cli.main import main
from evolab.engine import pipeline, templates
from evolab.engine.operations import load_template
from evolab.llm import scripted_reply
from evolab.schema import RunConfig, Seed
from evolab.store import Store
from evolab.testing.stub_server import StubServer

# The shipped constraints templates name the leak words in a rule line; in this stub the model copies them.
LEAKY_LINE = {"en": '- Write only the new instruction. Do not explain it, and do not mention these rules or the words '
                    '"given prompt" or "rewritten prompt".',
              "ko": '- 새 지시문만 쓰세요. 설명을 덧붙이지 말고, 이 규칙이나 "주어진 프롬프트", "다시 쓴 프롬프트" 같은 말을 '
                    '언급하지 마세요.'}
CLEAN_LINE = {"en": "- Reply with the new instruction alone, in plain words.",
              "ko": "- 새 지시문 하나만, 평범한 말로 답하세요."}
LEAK_REPLY = {"en": "#Rewritten Prompt#:\nFollowing the given prompt: {given} Keep it under 200 words.",
              "ko": "#Rewritten Prompt#:\n주어진 프롬프트에 따라: {given} 200단어 이내로 쓰세요."}
SEEDS = {"en": ["Explain how compound interest works.", "Describe the water cycle.", "Summarise the causes of WW1.",
                "Write a haiku about autumn.", "Explain what a hash table is.", "Give tips for a job interview."],
         "ko": ["복리가 어떻게 작동하는지 설명하세요.", "물의 순환을 설명하세요.", "제1차 세계대전의 원인을 요약하세요.",
                "가을에 관한 하이쿠를 쓰세요.", "해시 테이블이 무엇인지 설명하세요.", "면접 준비 요령을 알려 주세요."]}


def revised(language: str) -> str:
    text = load_template("constraints", language).text
    assert LEAKY_LINE[language] in text  # the fixture follows the shipped file
    return text.replace(LEAKY_LINE[language], CLEAN_LINE[language])


class Model:
    """The stub's model: leaks when the evolving prompt names the leak words; as the optimizer, proposes a clean
    revision, one that drops {instruction}, one that keeps the leaky line, and a second clean one."""

    def __init__(self, language: str):
        self.language = language
        self.evolve_prompts: list[str] = []
        self.optimizer_prompts: list[str] = []

    def __call__(self, messages, purpose):
        text = messages[-1]["content"]
        if purpose == "optimize":
            self.optimizer_prompts.append(text)
            clean = revised(self.language)
            return json.dumps({"candidates": [
                {"rationale": "Do not quote the leak words.", "template": clean},
                {"rationale": "Shorter.", "template": clean.replace("{instruction}", "the instruction")},
                {"rationale": "Stricter.", "template": load_template("constraints", self.language).text
                 + "\nBe precise."},
                {"rationale": "Clean and precise.", "template": clean + "\nBe precise."}]}, ensure_ascii=False)
        if purpose == "evolve":
            self.evolve_prompts.append(text)
            if LEAKY_LINE[self.language] in text:
                from evolab.llm.fake import given_prompt
                return LEAK_REPLY[self.language].format(given=given_prompt(messages))
        return scripted_reply(messages, purpose)


def source_run(store: Store, stub: StubServer, language: str) -> str:
    config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, api_key_env=STUB_KEY_ENV, rounds=1,
                       operation_weights={"constraints": 1.0}, concurrency=4, scorers=["complexity", "difficulty"])
    run_id = pipeline.create_run(store, [Seed(s) for s in SEEDS[language]], config)
    assert pipeline.run_sync(store, run_id) == "finished"
    return run_id


@pytest.mark.parametrize("language", ["en", "ko"])
def test_tune_picks_the_revision_that_stops_the_leak(tmp_path, language):
    model = Model(language)
    store = Store(tmp_path / "t.db")
    with StubServer(handler=model) as stub:
        run_id = source_run(store, stub, language)
        assert {n.rule for n in store.nodes(run_id, "eliminated")} == {"prompt_leak"}
        result = tuning.start_and_run(store, run_id, "constraints", candidates=3, dev_seeds=4)
    session, cands = result["session"], {c["idx"]: c for c in result["candidates"]}
    assert session["language"] == language and session["status"] == "measured"
    assert session["settings"]["optimizer_cost"]["calls"] == 1 and session["settings"]["optimizer_cost"]["tokens"] > 0
    assert len(session["failures"]) == 6 and all(f["rule"] == "prompt_leak" for f in session["failures"])
    # The optimizer saw the current template and the failed outputs.
    assert load_template("constraints", language).text in model.optimizer_prompts[0]
    assert LEAK_REPLY[language].split("{given}")[0].split("\n")[1] in model.optimizer_prompts[0]
    # Placeholders are preserved: the candidate that drops {instruction} was rejected and never run.
    assert cands[2]["status"] == "rejected" and "drops {instruction}" in cands[2]["reason"]
    assert cands[2]["dev_run_id"] is None
    # Measured on the same 4 dev seeds: the current wording and the leaky variant fail, the revision does not.
    assert cands[0]["measures"]["failure_rate"] == 1.0 and cands[0]["measures"]["by_rule"] == {"prompt_leak": 4}
    assert cands[3]["measures"]["failure_rate"] == 1.0
    assert cands[1]["measures"]["failure_rate"] == 0.0 and cands[1]["measures"]["tried"] == 4
    assert cands[1]["measures"]["difficulty_gain"] is not None
    assert result["best"] == 1
    # The dev run of candidate 1 really sent the revised wording.
    dev = store.nodes(cands[1]["dev_run_id"])
    assert all(CLEAN_LINE[language] in n.prompt for n in dev if n.parent_id)
    assert {n.template_version for n in dev if n.parent_id} == {cands[1]["hash"]}
    assert cands[1]["dev_run_id"] in store.tuning_dev_run_ids()
    text = tuning.format_summary(result)
    assert "BEST" in text and "+" + CLEAN_LINE[language] in text and "-" + LEAKY_LINE[language] in text


def test_adopted_version_survives_a_reload_and_a_run_uses_it(tmp_path):
    model = Model("en")
    path = tmp_path / "t.db"
    store = Store(path)
    with StubServer(handler=model) as stub:
        run_id = source_run(store, stub, "en")
        result = tuning.start_and_run(store, run_id, "constraints", candidates=3, dev_seeds=3)
        with pytest.raises(tuning.TuningError, match="rejected"):
            tuning.adopt(store, result["session"]["id"], 2)
        version = tuning.adopt(store, result["session"]["id"], result["best"], name="no-leak")
        store.close()

        store = Store(path)  # a new Store object on the same file
        found = templates.resolve(store, "constraints", "no-leak")
        assert [v.version for v in found] == [version.version] and found[0].text == revised("en")
        assert found[0].parent_version == load_template("constraints", "en").version
        assert templates.resolve(store, "constraints", version.version[:6])[0].name == "no-leak"
        diff = templates.diff_against_parent(store, found[0])
        assert "+" + CLEAN_LINE["en"] in diff and "-" + LEAKY_LINE["en"] in diff
        assert store.tuning_candidates(result["session"]["id"])[1]["adopted_as"] == "no-leak"

        # --template OP=VERSION: the run records and sends the new wording, and nothing leaks.
        model.evolve_prompts.clear()
        db = str(path)
        seeds = tmp_path / "seeds.txt"
        seeds.write_text("\n".join(SEEDS["en"][:3]), encoding="utf-8")
        code = main(["run", str(seeds), "--db", db, "--rounds", "1", "--ops", "constraints", "--model", "gpt-4o-mini",
                     "--base-url", stub.base_url, "--api-key-env", STUB_KEY_ENV, "--template", "constraints=no-leak",
                     "--seed", "1"])  # another seed: not answered from the dev runs' cache
        assert code == 0
    run = store.get_run(store.latest_run_id())
    assert run["config"].templates == {"en/constraints": version.version}
    children = [n for n in store.nodes(run["id"]) if n.parent_id]
    assert {n.template_version for n in children} == {version.version}
    assert {n.status for n in children} == {"kept"}
    assert len(model.evolve_prompts) == 3 and all(CLEAN_LINE["en"] in p for p in model.evolve_prompts)


def test_template_option_errors_are_clear(tmp_path, capsys):
    seeds = tmp_path / "s.txt"
    seeds.write_text("Explain NPV.\n", encoding="utf-8")
    db = str(tmp_path / "e.db")
    assert main(["run", str(seeds), "--db", db, "--template", "constraints"]) == 2
    assert "use OP=VERSION" in capsys.readouterr().err
    assert main(["run", str(seeds), "--db", db, "--template", "constraints=nope"]) == 2
    err = capsys.readouterr().err
    assert "No constraints template version 'nope'" in err and "shipped" in err
    assert main(["run", str(seeds), "--db", db, "--template", "nothing=shipped"]) == 2
    assert "Unknown operation" in capsys.readouterr().err


def test_no_failures_is_a_clear_error_and_is_recorded(tmp_path):
    store = Store(tmp_path / "t.db")
    with StubServer() as stub:  # the cooperative scripted model: every child is kept
        config = RunConfig(model="gpt-4o-mini", base_url=stub.base_url, api_key_env=STUB_KEY_ENV, rounds=1,
                           operation_weights={"deepen": 1.0}, scorers=["complexity", "difficulty"])
        run_id = pipeline.create_run(store, [Seed(s) for s in SEEDS["en"][:2]], config)
        pipeline.run_sync(store, run_id)
        with pytest.raises(tuning.TuningError, match="nothing for the optimizer to learn from"):
            tuning.start_and_run(store, run_id, "deepen")
    assert store.tuning_sessions(run_id)[0]["status"] == "failed"


def test_unreadable_optimizer_reply_is_recorded_not_guessed(tmp_path):
    model = Model("en")

    def handler(messages, purpose):
        return "I would rather not." if purpose == "optimize" else model(messages, purpose)

    store = Store(tmp_path / "t.db")
    with StubServer(handler=handler) as stub:
        run_id = source_run(store, stub, "en")
        with pytest.raises(tuning.TuningError, match="could not be read"):
            tuning.start_and_run(store, run_id, "constraints")
    session = store.tuning_sessions(run_id)[0]
    assert session["status"] == "failed" and session["optimizer_reply"] == "I would rather not."
    assert store.tuning_candidates(session["id"]) == []


def test_check_placeholders_reasons():
    current = load_template("complicate_input", "ko")
    assert current.fields == {"instruction", "format"}
    assert "drops {format}" in templates.check_placeholders(current, "{instruction} 만")
    assert "adds {topic}" in templates.check_placeholders(current, current.text + " {topic}")
    assert templates.check_placeholders(current, current.text) == "identical to the current template"
    assert templates.check_placeholders(current, current.text + "\n더 정확하게.") is None


def test_compare_two_versions_with_the_swapped_judge(tmp_path, capsys):
    model = Model("en")
    path = tmp_path / "t.db"
    store = Store(path)
    with StubServer(handler=model) as stub:
        run_id = source_run(store, stub, "en")
        result = tuning.start_and_run(store, run_id, "constraints", candidates=4, dev_seeds=4)
        sid = result["session"]["id"]
        tuning.adopt(store, sid, 1, name="clean")
        tuning.adopt(store, sid, 4, name="clean-precise")
        store.close()
        db = str(path)
        # The shipped wording kept nothing on this model: nothing to pair, said plainly.
        assert main(["tune", "--db", db, "--operation", "constraints", "--compare", "shipped", "clean"]) == 0
        assert "nothing to compare" in capsys.readouterr().out
        # The two clean versions kept children of the same 4 dev seeds: 4 pairs, each judged in both orders.
        assert main(["tune", "--db", db, "--operation", "constraints", "--compare", "clean", "clean-precise"]) == 0
        out = capsys.readouterr().out
    assert "4 pairs judged twice with the answers swapped" in out and "A shown first" in out
    assert "position swap: the same verdict in both orders for" in out
    store = Store(path)
    a, b = tuning.resolve_pair(store, "constraints", "clean", "clean-precise")
    rows = store.judgments(tuning.versions_comparison(a, b))
    assert len(rows) == 4 and all(r["first_verdict"] and r["second_verdict"] for r in rows)
    judged = [json.loads(r["detail"]) for r in rows]
    assert all(d["reply_first"] and d["reply_second"] for d in judged)
    summary = tuning.summarize_judgments(rows)
    assert summary["win"] + summary["tie"] + summary["lose"] == 4
    # The pairs are children of the same parent instruction, one from each version.
    for r in rows:
        na, nb = store.get_node(r["node_a"]), store.get_node(r["node_b"])
        assert na.template_version == a.version and nb.template_version == b.version
        assert store.get_node(na.parent_id).instruction == store.get_node(nb.parent_id).instruction


def test_a_stopped_session_resumes_without_asking_again(tmp_path, capsys):
    import asyncio
    import threading

    model = Model("en")
    path = tmp_path / "t.db"
    store = Store(path)
    stop = threading.Event()

    def progress(p):  # stop as the first candidate's dev run starts, like Ctrl-C or the page's Stop button
        if p["stage"] == "measuring" and p["candidate"] == 1:
            stop.set()

    with StubServer(handler=model) as stub:
        run_id = source_run(store, stub, "en")
        sid = tuning.start_session(store, run_id, "constraints", candidates=3, dev_seeds=3)
        with pytest.raises(tuning.TuningError, match="ended stopped"):
            asyncio.run(tuning.run_session(store, sid, progress=progress, stop_event=stop))
        session = store.tuning_session(sid)
        assert session["status"] == "failed" and f"--resume {sid}" in session["detail"]
        cands = store.tuning_candidates(sid)
        assert cands[0]["measures"]["tried"] == 3 and cands[1]["measures"] is None
        baseline_run = cands[0]["dev_run_id"]
        store.close()
        assert main(["tune", "--db", str(path), "--resume", sid, "--adopt", "1", "--name", "after-resume"]) == 0
    out = capsys.readouterr().out
    assert "adopted candidate 1" in out and "BEST" in out
    store = Store(path)
    assert len(model.optimizer_prompts) == 1  # the stored candidates were used, not asked for again
    cands = store.tuning_candidates(sid)
    assert cands[0]["dev_run_id"] == baseline_run and cands[1]["measures"]["failure_rate"] == 0.0
    assert store.tuning_session(sid)["status"] == "adopted"


def test_an_optimizer_endpoint_error_says_what_to_do(tmp_path, capsys):
    path = tmp_path / "t.db"
    store = Store(path)
    with StubServer(handler=Model("en")) as stub:
        source_run(store, stub, "en")
        store.close()
        stub.fail_always = 400  # e.g. a context window too small for the optimizer's prompt (not retried)
        assert main(["tune", "--db", str(path), "--operation", "constraints"]) == 2
    err = capsys.readouterr().err
    assert "The optimizer's endpoint failed" in err and "--resume tune-" in err
    store = Store(path)
    session = store.tuning_sessions()[0]
    assert session["status"] == "failed" and "optimizer's endpoint failed" in session["detail"]
    assert len(session["failures"]) == 6  # what was collected stays for the resume
