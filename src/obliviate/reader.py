"""The one reader of JSON, JSON Lines and YAML files, ours or the user's (a base module: every layer may use it).

    info = read_json(run / "run.json", what="the unlearning run's run.json")
    rows = read_json_lines(run / "log.jsonl")
    cfg = read_yaml("my.yaml") or {}
    text = read_text(path)          # decoded: UTF-8 with or without BOM, UTF-16/32 LE/BE (BOM or not)

Every failure is one line `ObliviateError` naming the file (and `what` it is), the line and column of a parse
error, and what to do: a missing file, a file that is not text in a detected encoding, truncated or invalid
JSON/YAML, a JSON Lines line that is not JSON. The encoding is detected from the first bytes as RFC 8259 §8.1
and `json.loads(bytes)` do (`json.detect_encoding`), so a UTF-16 file saved by a Windows editor reads like a
UTF-8 one. Values come back as the parser gives them: record schemas (`obliviate.data.schemas`) check types.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from obliviate import ObliviateError


def _where(path: Path | str, what: str | None) -> str:
    return f"{what} {path}" if what else str(path)


def _read_bytes(path: Path | str, what: str | None) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ObliviateError(f"{_where(path, what)}: no such file") from None
    except IsADirectoryError:
        raise ObliviateError(f"{_where(path, what)}: is a directory, not a file") from None
    except OSError as e:
        raise ObliviateError(f"{_where(path, what)}: cannot read ({e.strerror or e})") from None


def decode(data: bytes, path: Path | str = "<bytes>", what: str | None = None) -> str:
    """`data` as text in the encoding its first bytes declare (UTF-8, UTF-8 with BOM, UTF-16/32 with or
    without BOM); bytes invalid in that encoding are one line naming the file and the byte offset."""
    encoding = json.detect_encoding(data)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise ObliviateError(f"{_where(path, what)}: not {encoding.upper()} text (byte {data[e.start]:#04x} at "
                             f"offset {e.start}); save it as UTF-8") from None


def read_text(path: Path | str, *, what: str | None = None) -> str:
    """The text of `path`, decoded as `decode` says."""
    return decode(_read_bytes(path, what), path, what)


def _json_error(e: json.JSONDecodeError, text: str, where: str, line_offset: int = 0) -> ObliviateError:
    ends_early = e.pos >= len(text.rstrip())
    hint = ": the file ends early (truncated?)" if ends_early else ""
    return ObliviateError(f"{where}: line {e.lineno + line_offset} column {e.colno}: not valid JSON "
                          f"({e.msg}){hint}")


def parse_json(text: str, path: Path | str = "<text>", *, what: str | None = None) -> Any:
    """`text` (already decoded) as JSON; an error names `path`, line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _json_error(e, text, _where(path, what)) from None
    except RecursionError:
        raise ObliviateError(f"{_where(path, what)}: not valid JSON (nested too deeply)") from None


def read_json(path: Path | str, *, what: str | None = None) -> Any:
    """The JSON value of `path` (any encoding `decode` detects)."""
    return parse_json(read_text(path, what=what), path, what=what)


def parse_json_lines(text: str, path: Path | str = "<text>", *, what: str | None = None) -> list:
    """One JSON value per non-blank line of `text`; an error names the line (1-based) and column."""
    values = []
    for i, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 may sit inside a JSON string
        if line.strip():
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise _json_error(e, line, _where(path, what), line_offset=i - 1) from None
    return values


def read_json_lines(path: Path | str, *, what: str | None = None) -> list:
    """The values of a JSON Lines file, one per non-blank line."""
    return parse_json_lines(read_text(path, what=what), path, what=what)


def read_json_or_lines(path: Path | str, *, what: str | None = None) -> Any:
    """A JSON value, or the list of values of a JSON Lines file: the content decides (several objects one per
    line, as TOFU publishes under `.json`), and a `.jsonl` name; errors as `read_json` / `read_json_lines`."""
    text = read_text(path, what=what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if (text.lstrip().startswith("{") and e.msg == "Extra data") or Path(path).suffix == ".jsonl":
            return parse_json_lines(text, path, what=what)
        raise _json_error(e, text, _where(path, what)) from None


def parse_yaml(text: str, path: Path | str = "<text>", *, what: str | None = None) -> Any:
    """`text` as YAML (`yaml.safe_load`: plain data, never objects); an error names the line and column."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f": line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ObliviateError(f"{_where(path, what)}{at}: not valid YAML ({problem})") from None


def read_yaml(path: Path | str, *, what: str | None = None) -> Any:
    """The YAML value of `path` (None for an empty file)."""
    return parse_yaml(read_text(path, what=what), path, what=what)


def read_json_object(path: Path | str, *, what: str | None = None) -> dict:
    """`read_json` of a file that must hold a JSON object (our run.json, stage.json, model.json, ...)."""
    value = read_json(path, what=what)
    if not isinstance(value, dict):
        raise ObliviateError(f"{_where(path, what)}: expected a JSON object, got {type(value).__name__}")
    return value
