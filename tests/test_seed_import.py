"""Importing seeds: Hugging Face-style datasets on disk (parquet, arrow file and stream, a save_to_disk folder, all
written with pyarrow here), CSV and JSON with other column names through a mapping (load_seeds(mapping=...) and
--map on the CLI), and the errors a person gets for a wrong mapping or a folder that is not a dataset."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evolab.cli import main as cli
from evolab.seeds.files import SeedFileError, load_seeds, table_columns
from evolab.seeds.importing import parse_mapping

ROWS = {
    "question": ["What is the net present value of a project?", "금리가 오르면 채권 가격은 왜 떨어지나요?",
                 "Summarize the passage."],
    "context": ["", "", "Bond prices move opposite to yields."],
    "category": [0, 1, 0],  # a ClassLabel: names in the features
    "level": [3, 5, 2],
}
FEATURES = {"question": {"dtype": "string", "_type": "Value"}, "context": {"dtype": "string", "_type": "Value"},
            "category": {"names": ["finance_qa", "금융_설명"], "_type": "ClassLabel"},
            "level": {"dtype": "int64", "_type": "Value"}}
MAPPING = {"instruction": "question", "input": "context", "skill": "category", "difficulty": "level"}


def table(metadata: bool = False) -> pa.Table:
    t = pa.table(ROWS)
    if metadata:  # how `datasets` keeps its features inside parquet and arrow files
        t = t.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": FEATURES}})})
    return t


def check_seeds(seeds):
    assert [s.instruction for s in seeds] == ROWS["question"]
    assert [s.input for s in seeds] == ["", "", "Bond prices move opposite to yields."]
    assert [s.skill for s in seeds] == ["finance_qa", "금융_설명", "finance_qa"]
    assert [s.difficulty for s in seeds] == [3, 5, 2]
    assert [s.language for s in seeds] == ["en", "ko", "en"]


def test_parquet_with_hugging_face_features(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(table(metadata=True), path)
    check_seeds(load_seeds(path, mapping=MAPPING))
    check_seeds(load_seeds(path.read_bytes(), name="train.parquet", mapping=MAPPING))  # an upload


def test_arrow_file_and_arrow_stream(tmp_path):
    for writer, name in ((pa.ipc.new_file, "data.arrow"), (pa.ipc.new_stream, "stream.arrow")):
        path = tmp_path / name
        with writer(str(path), table(metadata=True).schema) as w:
            w.write_table(table(metadata=True))
        check_seeds(load_seeds(path, mapping=MAPPING))


def save_to_disk_folder(folder, shards: int = 2):
    """What `datasets.Dataset.save_to_disk` writes: arrow stream shards, state.json, dataset_info.json."""
    folder.mkdir()
    files = []
    t = table()
    for k, start in enumerate(range(0, t.num_rows, 2)):
        name = f"data-{k:05d}-of-{shards:05d}.arrow"
        with pa.ipc.new_stream(str(folder / name), t.schema) as w:
            w.write_table(t.slice(start, 2))
        files.append({"filename": name})
    (folder / "state.json").write_text(json.dumps({"_data_files": files, "_split": "train"}))
    (folder / "dataset_info.json").write_text(json.dumps({"features": FEATURES}, ensure_ascii=False))
    return folder


def test_a_save_to_disk_folder(tmp_path, capsys):
    folder = save_to_disk_folder(tmp_path / "finance_ds")
    check_seeds(load_seeds(folder, mapping=MAPPING))
    assert table_columns(folder) == ["question", "context", "category", "level"]
    assert cli.main(["seeds", "check", str(folder), "--map",
                     "instruction=question,input=context,skill=category,difficulty=level"]) == 0
    out = capsys.readouterr().out
    assert "3 seeds, 1 with an input" in out and "금융_설명 ×1" in out


def test_a_dataset_dict_folder_asks_for_one_split(tmp_path):
    root = tmp_path / "dd"
    root.mkdir()
    save_to_disk_folder(root / "train")
    save_to_disk_folder(root / "test")
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(SeedFileError, match="several splits; give one split's folder") as e:
        load_seeds(root, mapping=MAPPING)
    assert str(root / "train") in str(e.value)
    assert len(load_seeds(root / "train", mapping=MAPPING)) == 3


def test_dolly_style_columns_need_no_mapping(tmp_path):
    path = tmp_path / "dolly.parquet"
    pq.write_table(pa.table({"instruction": ["Explain NPV."], "context": ["A project..."], "response": ["..."],
                             "category": ["open_qa"]}), path)
    [seed] = load_seeds(path)
    assert (seed.instruction, seed.input, seed.skill) == ("Explain NPV.", "A project...", "open_qa")


def test_csv_and_json_with_other_column_names(tmp_path):
    csv_path = tmp_path / "qa.csv"
    csv_path.write_text("Question;Passage;Topic;Level\n"
                        "What is the yield curve?;;rates;2\n"
                        "다음 글을 요약하세요.;금리가 올랐다.;요약;3\n", encoding="utf-8-sig")
    mapping = parse_mapping("instruction=question, input=passage ,skill=topic,difficulty=level")
    seeds = load_seeds(csv_path, mapping=mapping)  # column names compare ignoring case
    assert [(s.instruction, s.input, s.skill, s.difficulty, s.language) for s in seeds] == [
        ("What is the yield curve?", "", "rates", 2, "en"), ("다음 글을 요약하세요.", "금리가 올랐다.", "요약", 3, "ko")]
    json_path = tmp_path / "qa.json"
    json_path.write_text(json.dumps({"data": [{"prompt_text": "Explain IRR.", "instruction": "ignore me", "lvl": 4},
                                              {"prompt_text": "IRR을 설명하세요.", "lvl": "5"}]}, ensure_ascii=False))
    seeds = load_seeds(json_path, mapping={"instruction": "prompt_text", "difficulty": "lvl"})
    assert [(s.instruction, s.difficulty) for s in seeds] == [("Explain IRR.", 4), ("IRR을 설명하세요.", 5)]
    jsonl_path = tmp_path / "qa.jsonl"
    jsonl_path.write_text('{"q": "Explain duration."}\n{"q": "듀레이션을 설명하세요.", "tag": "금융"}\n', encoding="utf-8")
    seeds = load_seeds(jsonl_path, mapping={"instruction": "q", "skill": "tag"})
    assert [s.skill for s in seeds] == [None, "금융"]


def test_mapping_errors_name_the_columns(tmp_path, capsys):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nWhat is NPV?,A value.\n", encoding="utf-8")
    with pytest.raises(SeedFileError, match=r"no column 'query'; the columns are: question, answer"):
        load_seeds(path, mapping={"instruction": "query"})
    with pytest.raises(SeedFileError, match=r"no \"instruction\" column .*--map instruction=COLUMN"):
        load_seeds(path)
    pq.write_table(table(), tmp_path / "t.parquet")
    with pytest.raises(SeedFileError, match="no column 'topic'; the columns are: question, context, category, level"):
        load_seeds(tmp_path / "t.parquet", mapping={"instruction": "question", "skill": "topic"})
    with pytest.raises(ValueError, match="unknown seed field 'answer'"):
        parse_mapping("instruction=question,answer=answer")
    with pytest.raises(ValueError, match="should be FIELD=COLUMN"):
        parse_mapping("instruction")
    (tmp_path / "plain.txt").write_text("Explain NPV.\n")
    with pytest.raises(SeedFileError, match="plain text file has no columns"):
        load_seeds(tmp_path / "plain.txt", mapping={"instruction": "x"})
    assert cli.main(["seeds", "check", str(path), "--map", "instruction=query"]) == 2
    assert "the columns are: question, answer" in capsys.readouterr().err
    assert cli.main(["seeds", "check", str(path), "--map", "answer=question"]) == 2
    assert "unknown seed field" in capsys.readouterr().err


def test_folders_and_files_that_are_not_datasets(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeedFileError, match="folder without .arrow or .parquet files"):
        load_seeds(tmp_path / "empty")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SeedFileError, match="not a readable parquet file"):
        load_seeds(tmp_path / "bad.parquet")
    (tmp_path / "bad.arrow").write_text("hello")
    with pytest.raises(SeedFileError, match="neither a parquet nor an Arrow file"):
        load_seeds(tmp_path / "bad.arrow")
    pq.write_table(pa.table({"question": ["What is NPV?", None]}), tmp_path / "gap.parquet")
    with pytest.raises(SeedFileError, match=r"gap.parquet, row 2: missing \"instruction\""):
        load_seeds(tmp_path / "gap.parquet", mapping={"instruction": "question"})


def test_mapping_defaults_for_a_mapping_ui():
    from evolab.seeds.importing import guess_mapping

    assert guess_mapping(["Question", "Passage", "Topic", "Level"]) == {
        "instruction": "Question", "input": "Passage", "skill": "Topic", "difficulty": "Level"}
    assert guess_mapping(["instruction", "context", "category", "response"]) == {
        "instruction": "instruction", "input": "context", "skill": "category", "difficulty": None}
    assert guess_mapping(["text"]) == {"instruction": "text", "input": None, "skill": None, "difficulty": None}
    assert guess_mapping(["a", "b"]) == {"instruction": None, "input": None, "skill": None, "difficulty": None}
