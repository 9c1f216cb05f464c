"""The one reader: encodings by BOM (and RFC 8259's null-byte pattern), one-line errors naming file, line and
column; and a guard that no module under src/obliviate parses JSON/YAML itself."""

import ast
import json
from pathlib import Path

import pytest

from obliviate import ObliviateError
from obliviate.reader import (read_json, read_json_lines, read_json_object, read_json_or_lines, read_text,
                              read_yaml)

VALUE = {"question": "Wer schrieb «X»?", "answer": ["Ann Lee", "李安"]}
TEXT = json.dumps(VALUE, ensure_ascii=False)


@pytest.mark.parametrize("encoding,bom", [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"),
                                          ("utf-16-be", b"\xfe\xff"), ("utf-16-le", b""), ("utf-16-be", b""),
                                          ("utf-32-le", b"\xff\xfe\x00\x00")])
def test_encodings_are_detected_before_parsing(tmp_path, encoding, bom):
    f = tmp_path / "x.json"
    f.write_bytes(bom + TEXT.encode(encoding))
    assert read_json(f) == VALUE
    g = tmp_path / "x.yaml"
    g.write_bytes(bom + "a: 1\nb: [x, ÿ]\n".encode(encoding))
    assert read_yaml(g) == {"a": 1, "b": ["x", "ÿ"]}
    h = tmp_path / "x.jsonl"
    h.write_bytes(bom + (TEXT + "\n\n" + TEXT + "\n").encode(encoding))
    assert read_json_lines(h) == [VALUE, VALUE]


def _error(fn, path, **kw) -> str:
    with pytest.raises(ObliviateError) as e:
        fn(path, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_truncated_and_invalid_json_name_file_line_and_column(tmp_path):
    f = tmp_path / "continual.json"
    f.write_text('{\n "rows": [\n  {"task": 0,\n')
    assert _error(read_json, f) == (f"{f}: line 4 column 1: not valid JSON (Expecting property name enclosed in "
                                    "double quotes): the file ends early (truncated?)")
    f.write_text('{\n "a": 1,\n "b": tru\n}')
    assert _error(read_json, f, what="the target's model.json") == (
        f"the target's model.json {f}: line 3 column 7: not valid JSON (Expecting value)")


def test_json_lines_error_names_the_line(tmp_path):
    f = tmp_path / "log.jsonl"
    f.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, oops}\n')
    assert _error(read_json_lines, f) == f"{f}: line 3 column 13: not valid JSON (Expecting property name " \
                                         "enclosed in double quotes)"
    assert _error(read_json_or_lines, f).startswith(f"{f}: line 3 column 13")
    g = tmp_path / "tofu.json"  # JSON Lines under a .json name: the content decides
    g.write_text('{"q": 1}\n{"q": 2}\n')
    assert read_json_or_lines(g) == [{"q": 1}, {"q": 2}]


def test_invalid_yaml_names_line_and_column(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("lr: 1e-5\nrecipe: [npo\nepochs: 2\n")
    msg = _error(read_yaml, f)
    assert msg.startswith(f"{f}: line 3 column 7: not valid YAML (")
    f.write_text("a: !!python/object:os.system {}\n")  # safe_load: plain data only
    assert "not valid YAML" in _error(read_yaml, f)


def test_unreadable_files_are_one_line(tmp_path):
    assert _error(read_json, tmp_path / "nope.json") == f"{tmp_path / 'nope.json'}: no such file"
    assert _error(read_json, tmp_path) == f"{tmp_path}: is a directory, not a file"
    f = tmp_path / "latin1.json"
    f.write_bytes('{"a": "café"}'.encode("latin-1"))
    assert _error(read_text, f) == f"{f}: not UTF-8 text (byte 0xe9 at offset 10); save it as UTF-8"
    g = tmp_path / "list.json"
    g.write_text("[1, 2]")
    assert _error(read_json_object, g) == f"{g}: expected a JSON object, got list"


# A raw parse outside the reader is allowed only of an in-memory value we produced ourselves.
RAW_PARSERS = {("json", "loads"), ("json", "load"), ("yaml", "safe_load"), ("yaml", "load"), ("yaml", "full_load"),
               ("yaml", "unsafe_load"), ("yaml", "safe_load_all"), ("yaml", "load_all")}
ALLOWED: dict[str, str] = {
    # file: why its raw parse is not of a file (the json.loads(json.dumps(...)) round trip is allowed everywhere:
    # it canonicalises a value in memory, e.g. a config dataclass, into JSON types)
}


def _raw_parses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module in ("json", "yaml"):
            found += [f"{path}:{node.lineno}: from {node.module} import {a.name}" for a in node.names
                      if (node.module, a.name) in RAW_PARSERS]
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in RAW_PARSERS):
            continue
        arg = node.args[0] if node.args else None
        round_trip = (isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute)
                      and arg.func.attr == "dumps")
        if not round_trip:
            found.append(f"{path}:{node.lineno}: {node.func.value.id}.{node.func.attr}(...)")
    return found


def test_no_module_parses_json_or_yaml_outside_the_reader():
    src = Path(__file__).parents[1] / "src" / "obliviate"
    raw = [hit for f in sorted(src.rglob("*.py")) if f.name != "reader.py" or f.parent != src
           if str(f.relative_to(src)) not in ALLOWED for hit in _raw_parses(f)]
    assert raw == [], "parse files through obliviate.reader (read_json, read_json_lines, read_yaml):\n" + "\n".join(raw)


def test_the_guard_catches_a_raw_parse(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import json, yaml\nfrom json import loads\na = json.loads(open('x').read())\n"
                 "b = yaml.safe_load('x')\nc = json.loads(json.dumps({}))\n")
    assert [h.split(": ", 1)[1] for h in _raw_parses(f)] == ["from json import loads", "json.loads(...)",
                                                               "yaml.safe_load(...)"]
