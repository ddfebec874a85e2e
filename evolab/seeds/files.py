"""Reading and validating seed files, and the example seed sets shipped in evolab/data/.

Every problem a person can cause with a file becomes one `SeedFileError` whose message names the
file, the line (or row, or item) and what is wrong, so the CLI and the app can show it as it is.
Formats: JSONL, JSON, CSV (header row) and plain text (one instruction a line); UTF-8, BOM or not.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import math
import numbers
import os
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from evolab.schema import Seed
from evolab.seeds import importing as seedimport
from evolab.seeds.fields import FIELD_NAMES, MAX_BYTES, SeedFileError, over_limit, read_file
from evolab.text.language import detect_language

FORMATS = ("jsonl", "json", "csv", "txt")
_FORMAT_BY_EXTENSION = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv"}
_FORMAT_ALIASES = {"ndjson": "jsonl", "tsv": "csv", "text": "txt"}
_KNOWN_NAMES = {n for names in FIELD_NAMES.values() for n in names}
_JSON_LIST_KEYS = ("seeds", "data", "instructions")  # where a JSON object may keep its list of seeds

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
EXAMPLE_SETS: dict[str, str] = {"general": "general.jsonl", "finance": "finance.jsonl"}


# -- reading ------------------------------------------------------------------------------------------

def load_seeds(path_or_file: Any, *, name: str | None = None, fmt: str | None = None,
               mapping: dict[str, str] | None = None) -> list[Seed]:
    """Seeds from a path, bytes (`name` gives the file name, as a Streamlit upload does) or a file object.

    The format comes from `fmt` or the name's extension (.jsonl, .json, .csv; anything else is text);
    .parquet, .arrow and save_to_disk folders are datasets (evolab.seeds.importing). `mapping` ({"instruction":
    "question", ...}) names the column of each seed field in a table with other column names.
    Raises SeedFileError for anything wrong with the file.
    """

    if fmt is None and seedimport.is_dataset(path_or_file, name):
        columns, rows = seedimport.read_dataset(path_or_file, name)
        name = name or (str(path_or_file) if isinstance(path_or_file, (str, os.PathLike))
                        else str(getattr(path_or_file, "name", "") or "<upload>"))
        seedimport.check_mapping(mapping, columns, name)
        if not mapping or "instruction" not in mapping:
            _check_instruction_column([str(c).strip().lower() for c in columns], name, None, "row")
        return [_seed_from_record(_mapped(row, mapping), name, i, "row") for i, row in enumerate(rows, 1)]
    data, name = _read_bytes(path_or_file, name)
    if mapping:
        if _pick_format(fmt, name) == "txt":
            raise SeedFileError(name, None, "a plain text file has no columns to map; --map works on CSV, JSON, "
                                            "JSONL, parquet and arrow files")
        seedimport.check_mapping(mapping, record_columns(data, name=name, fmt=fmt), name)
    fmt = _pick_format(fmt, name)
    text = _decode(data, name)
    if _is_blank(text):
        raise SeedFileError(name, None, "the file is empty")
    if "\x00" in text:  # UTF-16 without a BOM, or a binary file, decodes "fine" with NULs everywhere
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise SeedFileError(name, line, "contains NUL characters: probably UTF-16 or a binary file; "
                                        "save it as UTF-8 text")
    parse = {"jsonl": _parse_jsonl, "json": _parse_json, "csv": _parse_csv, "txt": _parse_txt}[fmt]
    return parse(text, name, mapping) if mapping else parse(text, name)


def _mapped(record: dict, mapping: dict[str, str] | None) -> dict:
    """A record with each mapped column renamed to its seed field. Columns that would otherwise be read as a
    mapped field (its usual names, e.g. "prompt" when instruction=question) are left out."""
    if not mapping:
        return record
    lowered = {str(k).strip().lower(): k for k in record}
    shadowed = {n for field in mapping for n in FIELD_NAMES[field]}
    out = {k: v for k, v in record.items() if str(k).strip().lower() not in shadowed}
    for field, column in mapping.items():  # a column of None: leave that field empty (a mapping UI's "none")
        key = lowered.get(column.strip().lower()) if column else None
        out.pop(key, None)
        out[field] = record[key] if key is not None else None
    return out


def record_columns(source: Any, *, name: str | None = None, fmt: str | None = None) -> list[str]:
    """The columns a mapping can name: a CSV's header, or the keys of a JSON/JSONL file's objects in
    first-seen order (a text file has none)."""
    data, name = _read_bytes(source, name)
    fmt = _pick_format(fmt, name)
    text = _decode(data, name)
    if fmt == "csv":
        first_line = _lines(text.lstrip())[0]
        delimiter = max(",;\t", key=first_line.count)
        try:
            header = next(csv.reader(io.StringIO(text.lstrip(), newline=""), delimiter=delimiter), [])
        except csv.Error as e:
            raise SeedFileError(name, 1, f"bad CSV header ({e})", "row") from None
        return [_trim(c) for c in header if not _is_blank(c)]
    if fmt not in ("json", "jsonl"):
        return []
    value = _try_json(text)
    if value is None:
        value = [_try_json(line) for line in _lines(text) if not _is_blank(line)]
    if isinstance(value, dict):
        lowered = {str(k).strip().lower(): v for k, v in value.items()}
        value = next((lowered[k] for k in _JSON_LIST_KEYS if isinstance(lowered.get(k), list)), [value])
    columns: dict[str, None] = {}
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            columns.update(dict.fromkeys(str(k) for k in item))
    return list(columns)


def table_columns(source: Any, name: str | None = None) -> list[str]:
    """The columns (or field names) of a seed table, for a mapping UI: a dataset, a CSV header, or the keys
    of a JSON/JSONL file's objects (in first-seen order)."""
    if seedimport.is_dataset(source, name):
        return seedimport.read_dataset(source, name)[0]
    return record_columns(source, name=name)


def _read_bytes(source: Any, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "<upload>"
        _check_size(len(source), name)
        return bytes(source), name
    if isinstance(source, (str, os.PathLike)):
        name = name or str(source)
        # A regular file only (not /dev/zero, a FIFO or a socket), and never more than MAX_BYTES of it.
        return read_file(source, name), name
    if hasattr(source, "read"):
        name = name or str(getattr(source, "name", "") or "<upload>")
        size = getattr(source, "size", None)  # Streamlit's UploadedFile knows its size
        if isinstance(size, int):
            _check_size(size, name)
        # getvalue() returns the whole buffer even when an earlier rerun already read it to the end.
        data = source.getvalue() if hasattr(source, "getvalue") else source.read(MAX_BYTES + 1)
        if isinstance(data, str):  # a file opened in text mode
            data = data.encode("utf-8")
        _check_size(len(data), name)
        return bytes(data), name
    raise TypeError(f"load_seeds() takes a path, bytes or a file object, not {type(source).__name__}")


def _check_size(size: int, name: str) -> None:
    if size > MAX_BYTES:
        raise over_limit(size, name)


def _pick_format(fmt: str | None, name: str) -> str:
    if fmt:
        fmt = fmt.lower().lstrip(".")
        fmt = _FORMAT_ALIASES.get(fmt, fmt)
        if fmt not in FORMATS:
            raise ValueError(f"unknown seed format {fmt!r}; use one of: {', '.join(FORMATS)}")
        return fmt
    return _FORMAT_BY_EXTENSION.get(Path(name).suffix.lower(), "txt")


def _decode(data: bytes, name: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode Text"
        raise SeedFileError(name, None, "UTF-16 text, not UTF-8; save it as UTF-8")
    if data.startswith(b"PK\x03\x04"):
        raise SeedFileError(name, None, "a zip file (an Excel workbook?), not text; save it as CSV UTF-8")
    try:
        return data.decode("utf-8-sig")  # strips a BOM if there is one
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        problem = f"not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start}); save it as UTF-8"
        if _looks_like_cp949(data):  # what Korean Excel writes when asked for plain "CSV"
            problem += ' (it looks like CP949/EUC-KR: in Excel choose "CSV UTF-8")'
        raise SeedFileError(name, line, problem) from None


def _looks_like_cp949(data: bytes) -> bool:
    try:
        return detect_language(data.decode("cp949")) == "ko"
    except UnicodeDecodeError:
        return False


def _lines(text: str) -> list[str]:
    # Only \n, \r\n and \r end a line: str.splitlines() would also split at U+2028 and friends, which
    # JSON allows raw inside strings, and would disagree with the line numbers an editor shows.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _parse_txt(text: str, name: str) -> list[Seed]:
    seeds = [_make_seed(line) for line in _lines(text) if not _is_blank(line)]
    if not seeds:
        raise SeedFileError(name, None, "the file has no seeds (only blank lines)")
    return seeds


def _parse_jsonl(text: str, name: str, mapping: dict[str, str] | None = None) -> list[Seed]:
    seeds = []
    for number, line in enumerate(_lines(text), 1):
        if _is_blank(line):
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as e:
            whole = _try_json(text)  # a pretty-printed JSON document saved as .jsonl still loads
            if whole is not None:
                return _seeds_from_document(whole, name, mapping)
            raise SeedFileError(name, number, _json_problem(e, line)) from None
        seeds.append(_seed_from_value(value, name, number, "line", mapping))
    if not seeds:
        raise SeedFileError(name, None, "the file has no seeds (only blank lines)")
    return seeds


def _parse_json(text: str, name: str, mapping: dict[str, str] | None = None) -> list[Seed]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # one value after another: JSON Lines saved as .json
            return _parse_jsonl(text, name, mapping)
        raise SeedFileError(name, e.lineno, _json_problem(e, "")) from None
    except (ValueError, RecursionError) as e:
        raise SeedFileError(name, None, _json_problem(e, "")) from None
    return _seeds_from_document(value, name, mapping)


def _try_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _json_problem(error: Exception, line: str) -> str:
    if isinstance(error, json.JSONDecodeError):
        problem = f"invalid JSON ({error.msg} at column {error.colno})"
        if line.strip() in ("{", "["):
            problem += "; in a .jsonl file each line must hold one whole JSON object"
        return problem
    if isinstance(error, RecursionError):
        return "invalid JSON (nested too deeply)"
    return f"invalid JSON ({error})"


def _seeds_from_document(value: Any, name: str, mapping: dict[str, str] | None = None) -> list[Seed]:
    """A whole JSON document: an array, or an object holding the array, or one seed object."""
    items = None
    if isinstance(value, list):
        items = value
    elif isinstance(value, dict):
        lowered = {str(k).strip().lower(): v for k, v in value.items()}
        instruction_names = [mapping["instruction"].strip().lower()] if mapping and "instruction" in mapping \
            else FIELD_NAMES["instruction"]
        if any(k in lowered for k in instruction_names):  # a file holding one seed
            items = [value]
        else:
            items = next((lowered[k] for k in _JSON_LIST_KEYS if isinstance(lowered.get(k), list)), None)
    if items is None:
        found = _kind(value)
        if isinstance(value, dict):
            found = f"an object with keys: {', '.join(map(str, value))}" if value else "an empty object"
        raise SeedFileError(name, None, 'expected an array of seeds, or an object with a "seeds", "data" or '
                                        f'"instructions" array; found {found}')
    seeds = [_seed_from_value(item, name, i, "item", mapping) for i, item in enumerate(items, 1)]
    if not seeds:
        raise SeedFileError(name, None, "the file has no seeds (an empty array)")
    return seeds


def _seed_from_value(value: Any, name: str, number: int, unit: str,
                     mapping: dict[str, str] | None = None) -> Seed:
    if isinstance(value, str):  # a bare string is an instruction
        value = {"instruction": value}
    if not isinstance(value, dict):
        raise SeedFileError(name, number, f'expected an object with an "instruction", found {_kind(value)}', unit)
    return _seed_from_record(_mapped(value, mapping), name, number, unit)


def _parse_csv(text: str, name: str, mapping: dict[str, str] | None = None) -> list[Seed]:
    # The delimiter the header uses most: Excel writes ";" in some locales, and tab for .tsv.
    first_line = _lines(text.lstrip())[0]
    delimiter = max(",;\t", key=first_line.count)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_BYTES))  # a long passage is a legitimate input
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    seeds = []
    row = 0  # spreadsheet row: the header is row 1, a cell with line breaks is still one row
    while True:
        start_line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise SeedFileError(name, row + 1, _csv_problem(e, start_line), "row") from None
        row += 1
        if all(_is_blank(c) for c in cells):  # blank lines, or ",,," rows that spreadsheets leave behind
            continue
        if header is None:
            header = [_trim(c).lower() for c in cells]
            _check_duplicate_fields(header, name, row, "row")
            if not mapping or "instruction" not in mapping:
                _check_instruction_column(header, name, row, "row")
            continue
        if len(cells) > len(header) and not all(_is_blank(c) for c in cells[len(header):]):
            shown = {",": "a comma", ";": "a semicolon", "\t": "a tab"}[delimiter]
            raise SeedFileError(name, row, f"{len(cells)} cells but the header has {len(header)} columns; "
                                           f"a field containing {shown} must be in double quotes", "row")
        seeds.append(_seed_from_record(_mapped(dict(zip(header, cells)), mapping), name, row, "row"))
    if not seeds:
        raise SeedFileError(name, None, "the file has no seeds (only a header row)")
    return seeds


def _check_instruction_column(header: list[str], name: str, row: int | None, unit: str) -> None:
    if not any(n in header for n in FIELD_NAMES["instruction"]):
        raise SeedFileError(name, row, f'no "instruction" column in the header (found: {", ".join(header)}); '
                                       f'name the column that holds it with --map instruction=COLUMN', unit)


def _csv_problem(error: csv.Error, start_line: int) -> str:
    message = str(error)
    if "unexpected end of data" in message:
        return f"unterminated quote: a quoted field in this row (from line {start_line}) never closes"
    if "expected after" in message:
        return f'bad quoting ({message}); inside a quoted field write a quote as two quotes ("")'
    return f"bad CSV ({message})"


# -- one record -> one Seed ------------------------------------------------------------------------------

def _seed_from_record(record: dict, name: str, number: int, unit: str, skip_blank: bool = False) -> Seed | None:
    """Validate one record (JSON object, CSV row or table row). `skip_blank`: a blank instruction gives
    None instead of an error (an empty row of a table editor)."""
    keys = [str(k).strip().lower() for k in record]
    _check_duplicate_fields(keys, name, number, unit)
    fields = dict(zip(keys, record.values()))

    def pick(field: str) -> Any:
        return next((fields[n] for n in FIELD_NAMES[field] if n in fields), None)

    instruction = _text(pick("instruction"), "instruction", name, number, unit)
    if _is_blank(instruction):
        if skip_blank:
            return None
        found = "" if any(n in fields for n in FIELD_NAMES["instruction"]) else \
            f" (found fields: {', '.join(fields) or 'none'})"
        raise SeedFileError(name, number, f'missing "instruction"{found}', unit)
    input_text = _text(pick("input"), "input", name, number, unit)
    skill = _trim(_text(pick("skill"), "skill", name, number, unit))
    seed = _make_seed(instruction, input_text, skill or None, _difficulty(pick("difficulty"), name, number, unit))
    seed.source = _source(fields.get("source"))
    return seed


def _source(value: Any) -> dict | None:
    """A seed's provenance (evolab.seeds.craft writes it as an object; a table or CSV cell holds it as JSON text).
    Another file's own "source" column (e.g. "wikipedia") is kept as a note, never dropped."""
    if _is_missing(value) or (isinstance(value, str) and _is_blank(value)):
        return None
    if isinstance(value, str):
        parsed = _try_json(value)
        value = parsed if isinstance(parsed, dict) else value
    return value if isinstance(value, dict) else {"note": value if isinstance(value, str) else json.dumps(value)}


def _make_seed(instruction: str, input_text: str = "", skill: str | None = None,
               difficulty: float | None = None) -> Seed:
    instruction = _trim(instruction)
    # The input is kept as written (indentation matters in code); only an all-blank one becomes "".
    input_text = "" if _is_blank(input_text) else input_text
    # The instruction's language decides the prompts; an English task over a Korean passage is English.
    return Seed(instruction=instruction, input=input_text, skill=skill, difficulty=difficulty,
                language=detect_language(instruction))


def _check_duplicate_fields(names: list[str], name: str, number: int, unit: str) -> None:
    counts = Counter(n for n in names if n in _KNOWN_NAMES)
    twice = [n for n, c in counts.items() if c > 1]
    if twice:
        raise SeedFileError(name, number, f'two fields named "{twice[0]}" (names ignore case and spaces)', unit)


def _is_missing(value: Any) -> bool:
    # None, NaN, and pandas' NA/NaT (checked by name so this module does not import pandas).
    return (value is None or (isinstance(value, float) and math.isnan(value))
            or type(value).__name__ in ("NAType", "NaTType"))


def _text(value: Any, field: str, name: str, number: int, unit: str) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return str(value)
    raise SeedFileError(name, number, f'"{field}" should be text, not {_kind(value)}', unit)


def _difficulty(value: Any, name: str, number: int, unit: str) -> float | None:
    if _is_missing(value) or (isinstance(value, str) and _is_blank(value)):
        return None
    number_value = None
    if isinstance(value, (numbers.Real, str)) and not isinstance(value, bool):
        try:
            number_value = float(value.strip() if isinstance(value, str) else value)
        except (ValueError, OverflowError):  # "hard"; an integer too big for a float
            pass
    if number_value is None or not math.isfinite(number_value):
        raise SeedFileError(name, number, f"difficulty {_show(value)} is not a number", unit)
    return int(number_value) if number_value.is_integer() else number_value  # 3, not 3.0, in exports


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Number):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _invisible(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp")


def _trim(text: str) -> str:
    """Strip whitespace and invisible characters (zero-width spaces, stray BOMs, control characters)."""
    start, end = 0, len(text)
    while start < end and _invisible(text[start]):
        start += 1
    while end > start and _invisible(text[end - 1]):
        end -= 1
    return text[start:end]


def _is_blank(text: str) -> bool:
    return not _trim(text)


# -- language ---------------------------------------------------------------------------------------------

# -- summaries --------------------------------------------------------------------------------------------

def summarize(seeds: Iterable[Seed]) -> dict[str, Any]:
    """Counts for a quick look at a seed set: by skill, difficulty and language."""
    seeds = list(seeds)
    by_difficulty = Counter("(none)" if s.difficulty is None else s.difficulty for s in seeds)
    difficulty_order = sorted(by_difficulty, key=lambda d: (d == "(none)", d if d != "(none)" else 0))
    return {
        "count": len(seeds),
        "with_input": sum(1 for s in seeds if s.input),
        "by_skill": dict(Counter(s.skill or "(none)" for s in seeds).most_common()),
        "by_difficulty": {d: by_difficulty[d] for d in difficulty_order},
        "by_language": dict(Counter(s.language or "(none)" for s in seeds).most_common()),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines for the CLI, e.g. "skill: writing ×4, math ×5"."""
    def counts(d: dict) -> str:
        return ", ".join(f"{k} ×{v}" for k, v in d.items()) or "-"

    return "\n".join([
        f"{summary['count']} seeds, {summary['with_input']} with an input",
        f"language:   {counts(summary['by_language'])}",
        f"skill:      {counts(summary['by_skill'])}",
        f"difficulty: {counts(summary['by_difficulty'])}",
    ])


# -- example sets -----------------------------------------------------------------------------------------

def example_path(name: str) -> Path:
    try:
        return DATA_DIR / EXAMPLE_SETS[name]
    except KeyError:
        raise ValueError(f"no example seed set named {name!r}; choose one of: {', '.join(EXAMPLE_SETS)}") from None


def load_example(name: str) -> list[Seed]:
    return load_seeds(example_path(name))


# -- table editor -----------------------------------------------------------------------------------------

TABLE_COLUMNS = ("instruction", "input", "skill", "difficulty")


def seeds_to_records(seeds: Iterable[Seed]) -> list[dict[str, Any]]:
    """Rows for a data editor: instruction, input, skill, difficulty (language is detected again on the way back),
    and, for a seed that has one, its provenance as JSON text in "source" (read-only in the editor, so it survives
    an edit)."""
    return [{**{column: getattr(s, column) for column in TABLE_COLUMNS},
             **({"source": json.dumps(s.source, ensure_ascii=False)} if s.source else {})} for s in seeds]


def seeds_from_records(records: Any) -> list[Seed]:
    """Seeds from edited rows (a list of dicts or a DataFrame). Rows with a blank instruction are dropped
    (the editor's empty new rows); a bad difficulty raises SeedFileError naming the row of "table"."""
    if hasattr(records, "to_dict"):  # a pandas DataFrame
        records = records.to_dict("records")
    seeds = []
    for row, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise SeedFileError("table", row, f"expected a row of named cells, found {_kind(record)}", "row")
        seed = _seed_from_record(record, "table", row, "row", skip_blank=True)
        if seed is not None:
            seeds.append(seed)
    return seeds
