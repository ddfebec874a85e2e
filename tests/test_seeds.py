"""Seed files as people bring them: every format loads, every mistake gets a message naming file, line and
problem, and nothing else ever escapes (property tests)."""
from __future__ import annotations

import csv
import io
import json
import pickle
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evolab.schema import Seed
from evolab.seeds.files import (
    EXAMPLE_SETS,
    MAX_BYTES,
    SeedFileError,
    detect_language,
    example_path,
    format_summary,
    load_example,
    load_seeds,
    seeds_from_records,
    seeds_to_records,
    summarize,
)

KO = "복리 이자가 무엇인지 초등학생도 이해할 수 있게 설명해 주세요."


def write(tmp_path, name, content, encoding="utf-8"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode(encoding))
    return path


def error_of(*args, **kwargs) -> SeedFileError:
    with pytest.raises(SeedFileError) as info:
        load_seeds(*args, **kwargs)
    return info.value


# -- every format loads ---------------------------------------------------------------------------------

def test_jsonl_loads_with_blank_lines_and_crlf(tmp_path):
    path = write(tmp_path, "seeds.jsonl",
                 '{"instruction": "Write a haiku.", "skill": "writing", "difficulty": 2}\r\n\r\n'
                 '   \n{"instruction": "Fix this code.", "input": "print(1", "difficulty": "4.5"}\n')
    seeds = load_seeds(path)
    assert seeds == [
        Seed("Write a haiku.", "", "writing", 2, "en"),
        Seed("Fix this code.", "print(1", None, 4.5, "en"),
    ]


def test_json_array_of_objects_and_of_strings(tmp_path):
    objects = write(tmp_path, "a.json", json.dumps([{"instruction": "One"}, {"instruction": "Two", "skill": "x"}]))
    assert [s.instruction for s in load_seeds(objects)] == ["One", "Two"]
    strings = write(tmp_path, "b.json", json.dumps(["First task", "Second task"], indent=2))
    assert [s.instruction for s in load_seeds(strings)] == ["First task", "Second task"]


@pytest.mark.parametrize("key", ["seeds", "data", "instructions", "Seeds"])
def test_json_object_holding_a_list(tmp_path, key):
    path = write(tmp_path, "set.json", json.dumps({"name": "mine", key: [{"instruction": "Explain tides."}]}))
    assert [s.instruction for s in load_seeds(path)] == ["Explain tides."]


def test_json_object_that_is_one_seed(tmp_path):
    path = write(tmp_path, "one.json", json.dumps({"instruction": "Explain tides.", "data": [1, 2]}))
    assert load_seeds(path) == [Seed("Explain tides.", "", None, None, "en")]


def test_csv_with_header_quotes_and_multiline_cells(tmp_path):
    path = write(tmp_path, "seeds.csv",
                 'instruction,input,skill,difficulty\n'
                 '"Summarise this, briefly.","Line one\nLine two",summarisation,3\n'
                 '"Say ""hi"" politely",,writing,\n'
                 ',,,\n')  # the empty row a spreadsheet leaves behind
    seeds = load_seeds(path)
    assert seeds == [
        Seed("Summarise this, briefly.", "Line one\nLine two", "summarisation", 3, "en"),
        Seed('Say "hi" politely', "", "writing", None, "en"),
    ]


def test_csv_semicolon_and_tab_delimiters(tmp_path):
    semi = write(tmp_path, "semi.csv", "Instruction;Difficulty\nCount to ten, slowly;1\n")
    assert load_seeds(semi) == [Seed("Count to ten, slowly", "", None, 1, "en")]
    tabs = write(tmp_path, "tabs.tsv", "instruction\tskill\nName three rivers\tgeography\n")
    assert load_seeds(tabs) == [Seed("Name three rivers", "", "geography", None, "en")]


def test_txt_and_unknown_extensions_are_one_instruction_a_line(tmp_path):
    for name in ("seeds.txt", "seeds.md", "seeds"):
        path = write(tmp_path, name, "  Write a limerick.  \n\n\tList five fruits.\r\n")
        assert [s.instruction for s in load_seeds(path)] == ["Write a limerick.", "List five fruits."]


def test_bytes_upload_with_a_name(tmp_path):
    data = "instruction,skill\nExplain VAT.,tax\n".encode()
    assert load_seeds(data, name="upload.csv") == [Seed("Explain VAT.", "", "tax", None, "en")]
    # Without a name or fmt, bytes are plain text; fmt overrides the name.
    assert load_seeds(b"Explain VAT.\n")[0].instruction == "Explain VAT."
    assert load_seeds(b'{"instruction": "Hi"}', name="x.txt", fmt="jsonl")[0].instruction == "Hi"


def test_file_objects_like_a_streamlit_upload(tmp_path):
    upload = io.BytesIO(b'{"instruction": "Plan a trip."}\n')
    upload.name = "trip.jsonl"
    upload.read()  # an earlier rerun already read it: the seeds must still be there
    assert load_seeds(upload)[0].instruction == "Plan a trip."
    with open(write(tmp_path, "plain.txt", "Plan a trip.\n"), "rb") as f:
        assert load_seeds(f)[0].instruction == "Plan a trip."


def test_field_names_ignore_case_and_spaces(tmp_path):
    path = write(tmp_path, "s.jsonl", json.dumps({"Skill": "Writing", "Difficulty": 3, " Instruction ": "Write.",
                                                 "INPUT": "text"}) + "\n")
    assert load_seeds(path) == [Seed("Write.", "text", "Writing", 3, "en")]
    csv_path = write(tmp_path, "s.csv", " Instruction , SKILL \nWrite.,Writing\n")
    assert load_seeds(csv_path) == [Seed("Write.", "", "Writing", None, "en")]


def test_prompt_and_context_are_aliases_only_when_unambiguous(tmp_path):
    alias = write(tmp_path, "a.jsonl", json.dumps({"prompt": "Answer the question.", "context": "Paris is..."}))
    assert load_seeds(alias) == [Seed("Answer the question.", "Paris is...", None, None, "en")]
    both = write(tmp_path, "b.jsonl", json.dumps({"instruction": "Real one", "prompt": "other field"}))
    assert load_seeds(both)[0].instruction == "Real one"
    twice = write(tmp_path, "c.jsonl", json.dumps({"Instruction": "a", "instruction": "b"}))
    assert 'two fields named "instruction"' in str(error_of(twice))


def test_korean_round_trips_and_is_detected(tmp_path):
    for name, content in [("k.jsonl", json.dumps({"instruction": KO, "skill": "금융"}, ensure_ascii=False)),
                          ("k.csv", f"instruction,skill\n{KO},금융\n"),
                          ("k.txt", KO + "\n")]:
        seed = load_seeds(write(tmp_path, name, content))[0]
        assert seed.instruction == KO and seed.language == "ko"
    assert load_seeds(write(tmp_path, "k2.jsonl", json.dumps({"instruction": KO})))[0].instruction == KO


def test_detect_language():
    assert detect_language(KO) == "ko"
    assert detect_language("ETF와 인덱스 펀드의 차이를 설명하세요") == "ko"  # English terms inside Korean
    assert detect_language("Explain compound interest.") == "en"
    assert detect_language("Translate 안녕 into English, please, and explain the greeting") == "en"
    assert detect_language("1234 !!!") == "en"
    assert detect_language("") == "en"


def test_utf8_bom_is_handled(tmp_path):
    bom = b"\xef\xbb\xbf"
    assert load_seeds(write(tmp_path, "b.csv", bom + "Instruction\n설명해 주세요\n".encode()))[0].language == "ko"
    assert load_seeds(write(tmp_path, "b.jsonl", bom + b'{"instruction": "x"}\n'))[0].instruction == "x"
    assert load_seeds(write(tmp_path, "b.txt", bom + b"first\n"))[0].instruction == "first"


def test_json_lines_saved_as_json_and_pretty_json_saved_as_jsonl_still_load(tmp_path):
    lines = write(tmp_path, "lines.json", '{"instruction": "a"}\n{"instruction": "b"}\n')
    assert [s.instruction for s in load_seeds(lines)] == ["a", "b"]
    pretty = write(tmp_path, "pretty.jsonl", json.dumps([{"instruction": "a"}], indent=2))
    assert [s.instruction for s in load_seeds(pretty)] == ["a"]


# -- every mistake gets a clear SeedFileError -------------------------------------------------------------

def assert_error(error: SeedFileError, path, line, *words):
    message = str(error)
    assert error.path == str(path) and message.startswith(str(path))
    assert error.line == line
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("name,content", [("e.txt", ""), ("e.jsonl", "\n  \n"), ("e.csv", "\r\n"), ("e.json", " ")])
def test_empty_file(tmp_path, name, content):
    path = write(tmp_path, name, content)
    assert_error(error_of(path), path, None, "the file is empty")
    assert str(error_of(path)) == f"{path}: the file is empty"


def test_header_only_csv_and_empty_json_array(tmp_path):
    header = write(tmp_path, "h.csv", "instruction,input,skill,difficulty\n\n")
    assert_error(error_of(header), header, None, "no seeds", "header")
    empty = write(tmp_path, "e.json", "[]")
    assert_error(error_of(empty), empty, None, "no seeds")


def test_invalid_json_on_a_line(tmp_path):
    path = write(tmp_path, "seeds.jsonl", '{"instruction": "a"}\n\n{"instruction" "b"}\n{"instruction": "c"}\n')
    error = error_of(path)
    assert_error(error, path, 3, "invalid JSON", "column 16")
    assert str(error) == f"{path}, line 3: invalid JSON (Expecting ':' delimiter at column 16)"


def test_invalid_json_document_names_its_line(tmp_path):
    path = write(tmp_path, "seeds.json", '[\n  {"instruction": "a"},\n  {"instruction": "b",}\n]')
    assert_error(error_of(path), path, 3, "invalid JSON")


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = write(tmp_path, "seeds.jsonl", '{"instruction": "a"}\n42\n')
    assert_error(error_of(path), path, 2, "expected an object", "a number")


def test_json_object_without_a_list(tmp_path):
    path = write(tmp_path, "seeds.json", '{"name": "x", "rows": 3}')
    assert_error(error_of(path), path, None, '"seeds"', "name, rows")
    for content, found in [("{}", "an empty object"), ('"just text"', "a string"), ("3", "a number")]:
        path = write(tmp_path, "seeds.json", content)
        assert_error(error_of(path), path, None, f"found {found}")


@pytest.mark.parametrize("name,content,line,unit", [
    ("seeds.csv", "instruction,skill\na,x\nb,y\n,z\n", 4, "row"),
    ("seeds.jsonl", '{"instruction": "a"}\n{"skill": "x"}\n', 2, "line"),
    ("seeds.jsonl", '{"instruction": "   "}\n', 1, "line"),
    ("seeds.json", '[{"instruction": "a"}, {"instruction": null}]', 2, "item"),
])
def test_missing_instruction(tmp_path, name, content, line, unit):
    path = write(tmp_path, name, content)
    error = error_of(path)
    assert_error(error, path, line, 'missing "instruction"', f"{unit} {line}")


def test_missing_instruction_lists_the_fields_found(tmp_path):
    path = write(tmp_path, "seeds.jsonl", '{"question": "a", "answer": "b"}\n')
    assert_error(error_of(path), path, 1, "question, answer")
    csv_path = write(tmp_path, "seeds.csv", "question,answer\na,b\n")
    assert_error(error_of(csv_path), csv_path, 1, 'no "instruction" column', "question, answer")


def test_not_utf8(tmp_path):
    path = write(tmp_path, "seeds.csv", b"instruction\nfine\ncaf\xff\n")
    error = error_of(path)
    assert_error(error, path, 3, "not UTF-8", "0xff", "offset 20", "save it as UTF-8")
    assert str(error) == f"{path}, line 3: not UTF-8 text (invalid byte 0xff at offset 20); save it as UTF-8"


def test_korean_excel_csv_gets_a_hint(tmp_path):
    path = write(tmp_path, "seeds.csv", f"instruction\n{KO}\n", encoding="cp949")
    assert_error(error_of(path), path, 2, "not UTF-8", "CP949", "CSV UTF-8")


def test_utf16_and_binary_files(tmp_path):
    utf16 = write(tmp_path, "u.txt", "instruction\nhello\n", encoding="utf-16")
    assert_error(error_of(utf16), utf16, None, "UTF-16")
    no_bom = write(tmp_path, "n.txt", "hello\n".encode("utf-16-le"))
    assert_error(error_of(no_bom), no_bom, 1, "NUL")
    xlsx = write(tmp_path, "seeds.csv", b"PK\x03\x04" + bytes(range(256)))
    assert_error(error_of(xlsx), xlsx, None, "Excel")


def test_unterminated_csv_quote_names_the_row(tmp_path):
    path = write(tmp_path, "seeds.csv", 'instruction,skill\na,x\n"never closed,y\nb,z\nc,w\n')
    error = error_of(path)
    assert_error(error, path, 3, "unterminated quote", "row 3", "line 3")
    assert error.unit == "row"


def test_bad_csv_quoting_names_the_row(tmp_path):
    path = write(tmp_path, "seeds.csv", 'instruction,skill\n"Say "hi" now",x\n')
    assert_error(error_of(path), path, 2, "bad quoting", '""')


def test_csv_row_with_too_many_cells(tmp_path):
    path = write(tmp_path, "seeds.csv", "instruction,skill\nWrite about cats, dogs and birds,writing\n")
    assert_error(error_of(path), path, 2, "3 cells", "2 columns", "double quotes")


def test_over_50_mb_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as f:
        f.truncate(int(61.2 * 2**20))  # sparse: costs no disk and no time
    error = error_of(path)
    assert str(error) == f"{path}: 61.2 MB is over the 50 MB limit"
    # A Streamlit upload says its size; it is checked before its bytes are touched.
    upload = io.BytesIO(b"small")
    upload.name, upload.size = "big.csv", MAX_BYTES + 1
    assert_error(error_of(upload), "big.csv", None, "over the 50 MB limit")


@pytest.mark.parametrize("name,content,line,shown", [
    ("d.jsonl", '{"instruction": "a", "difficulty": "hard"}\n', 1, "'hard'"),
    ("d.jsonl", '{"instruction": "a"}\n{"instruction": "b", "difficulty": [3]}\n', 2, "[3]"),
    ("d.jsonl", '{"instruction": "a", "difficulty": Infinity}\n', 1, "inf"),
    ("d.csv", "instruction,difficulty\na,nan\n", 2, "'nan'"),
    ("d.jsonl", '{"instruction": "a", "difficulty": true}\n', 1, "True"),
    ("d.csv", "instruction,difficulty\na,3\nb,very hard\n", 3, "'very hard'"),
])
def test_difficulty_must_be_a_number(tmp_path, name, content, line, shown):
    path = write(tmp_path, name, content)
    assert_error(error_of(path), path, line, f"difficulty {shown} is not a number")


def test_nan_difficulty_means_not_set(tmp_path):
    # json.dumps writes NaN for a missing float (e.g. from pandas); it means "no difficulty", as null does.
    path = write(tmp_path, "d.jsonl", '{"instruction": "a", "difficulty": NaN}\n{"instruction": "b", "difficulty": null}')
    assert [s.difficulty for s in load_seeds(path)] == [None, None]


def test_instruction_must_be_text(tmp_path):
    path = write(tmp_path, "s.jsonl", '{"instruction": ["a", "b"]}\n')
    assert_error(error_of(path), path, 1, '"instruction" should be text')


def test_missing_file_and_folder(tmp_path):
    assert_error(error_of(tmp_path / "nope.csv"), tmp_path / "nope.csv", None, "no such file")
    assert_error(error_of(tmp_path), tmp_path, None, "folder")


def test_error_attributes_and_pickling():
    error = SeedFileError("seeds.csv", 4, 'missing "instruction"', "row")
    assert (error.path, error.line, error.problem) == ("seeds.csv", 4, 'missing "instruction"')
    assert str(error) == 'seeds.csv, row 4: missing "instruction"'
    assert isinstance(error, ValueError)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


# -- shipped examples -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(EXAMPLE_SETS))
def test_examples_load_with_skills_and_difficulties(name):
    seeds = load_example(name)
    assert example_path(name).is_file() and len(seeds) >= 20
    assert all(s.skill and s.difficulty is not None and 1 <= s.difficulty <= 10 for s in seeds)
    assert len({s.skill for s in seeds}) >= 5
    assert any(s.input for s in seeds)
    assert len({s.instruction for s in seeds}) == len(seeds)


def test_finance_example_has_korean_and_english():
    languages = summarize(load_example("finance"))["by_language"]
    assert languages["ko"] >= 10 and languages["en"] >= 10


def test_unknown_example():
    with pytest.raises(ValueError, match="general"):
        load_example("astrology")


# -- summary and the table editor --------------------------------------------------------------------------

def test_summarize_and_format():
    seeds = [Seed("a", "", "math", 3, "en"), Seed("b", "x", "math", None, "en"), Seed("c", "", None, 1, "ko")]
    summary = summarize(seeds)
    assert summary["count"] == 3 and summary["with_input"] == 1
    assert summary["by_skill"] == {"math": 2, "(none)": 1}
    assert list(summary["by_difficulty"].items()) == [(1, 1), (3, 1), ("(none)", 1)]
    assert summary["by_language"] == {"en": 2, "ko": 1}
    text = format_summary(summary)
    assert "3 seeds" in text and "math ×2" in text and "ko ×1" in text
    assert summarize([])["count"] == 0 and format_summary(summarize([]))


def test_records_round_trip_and_blank_rows_dropped():
    seeds = load_example("finance")
    records = seeds_to_records(seeds)
    assert set(records[0]) == {"instruction", "input", "skill", "difficulty"}
    assert seeds_from_records(records + [{"instruction": "  ", "skill": "x"}, {"instruction": None}]) == seeds


def test_records_from_a_dataframe_with_empty_cells():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame([{"instruction": "Explain APR.", "input": None, "skill": None, "difficulty": float("nan")},
                          {"instruction": None, "input": None, "skill": None, "difficulty": None}])
    assert seeds_from_records(frame) == [Seed("Explain APR.", "", None, None, "en")]
    numbers = pd.DataFrame({"instruction": ["a"], "difficulty": [7]})  # numpy int64 cells
    assert seeds_from_records(numbers)[0].difficulty == 7


def test_records_bad_difficulty_names_the_table_row():
    with pytest.raises(SeedFileError) as info:
        seeds_from_records([{"instruction": "a", "difficulty": 2}, {"instruction": "b", "difficulty": "hard"}])
    assert str(info.value) == "table, row 2: difficulty 'hard' is not a number"


# -- properties: anything a person can write gives seeds or a SeedFileError, never another exception --------

nasty_text = st.one_of(
    st.text(),
    st.text(alphabet=" \t\r\n\x0b\x0c\u00a0\u2028\u2029\u200b\ufeff"),  # whitespace and invisible only
    st.text(alphabet=string.punctuation),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=3000),  # huge words
    st.text(alphabet="a한글Zяω中😀\x00\x01\x1b\x7f\x85 "),  # mixed scripts and control characters
)
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(lines=st.lists(nasty_text, max_size=8))
def test_any_text_file_gives_seeds_or_a_seed_file_error(tmp_path, lines):
    text = "\n".join(lines)
    path = write(tmp_path, "p.txt", text)
    try:
        seeds = load_seeds(path)
    except SeedFileError as e:
        assert str(e).startswith(str(path))
        return
    assert seeds
    for seed in seeds:
        assert seed.instruction and seed.instruction == seed.instruction.strip()
        assert seed.instruction in text and seed.language in ("en", "ko")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=10,
)
field_names = st.sampled_from(["instruction", "Instruction", " INPUT ", "skill", "Difficulty", "prompt",
                               "context", "other"])
seed_like = st.dictionaries(field_names, json_values | nasty_text | st.sampled_from(["3", " 7.5 ", "hard", ""]),
                            max_size=5)
valid_seed = st.fixed_dictionaries({"instruction": st.text(min_size=1).filter(str.strip)},
                                   optional={"skill": st.text(), "difficulty": st.integers(1, 10)})
json_lines = st.one_of(valid_seed.map(json.dumps), json_values.map(json.dumps), seed_like.map(json.dumps),
                       seed_like.map(lambda d: json.dumps(d, ensure_ascii=False)), nasty_text)


@PROPERTY
@given(lines=st.lists(json_lines, max_size=6), ext=st.sampled_from(["jsonl", "json"]))
def test_any_json_lines_give_seeds_or_a_seed_file_error(tmp_path, lines, ext):
    path = write(tmp_path, f"p.{ext}", "\n".join(lines))
    try:
        seeds = load_seeds(path)
    except SeedFileError as e:
        assert str(e).startswith(str(path))
        return
    for seed in seeds:
        assert seed.instruction and seed.instruction == seed.instruction.strip()
        assert seed.difficulty is None or isinstance(seed.difficulty, (int, float))


cell_text = st.text(alphabet='ab 가\t\r\n,;"', max_size=12)  # delimiters, quotes, line breaks inside cells


@PROPERTY
@given(rows=st.lists(st.tuples(cell_text, cell_text, cell_text, st.none() | st.integers(1, 10)), max_size=6))
def test_csv_written_by_the_csv_module_loads_back_exactly(tmp_path, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["instruction", "input", "skill", "difficulty"])
    writer.writerows(rows)
    path = write(tmp_path, "p.csv", buffer.getvalue())

    expected, expected_error = [], None
    for row_number, (instruction, input_text, skill, difficulty) in enumerate(rows, 2):
        if not (instruction.strip() or input_text.strip() or skill.strip() or difficulty is not None):
            continue  # a blank row is skipped
        if not instruction.strip():
            expected_error = f"{path}, row {row_number}: missing \"instruction\""
            break
        expected.append(Seed(instruction.strip(), input_text if input_text.strip() else "", skill.strip() or None,
                             difficulty, detect_language(instruction)))
    try:
        seeds = load_seeds(path)
    except SeedFileError as e:
        assert str(e) == (expected_error or f"{path}: the file has no seeds (only a header row)")
        return
    assert expected_error is None and seeds == expected
