"""Data loading in one place: the synthetic world's files, a hub dataset, or local JSON/JSONL/Parquet.

    records = load_split("data/demo", "forget10")           # a world directory (DIR/forget10.json)
    records = load_split("data/demo", "full+world_facts")   # '+' concatenates splits
    records = load_split("locuslab/TOFU", "forget10")       # hub: load_dataset(id, "forget10", split="train")
    records = load_split("muse-bench/MUSE-News", "knowmem/retain_qa", schema=QARecord)
    records = load_split("muse_copy", "raw/forget", schema=TextRecord)   # DIR/raw/forget.json|.jsonl|.parquet
    records = load_split("my_qa.jsonl")                     # one local file is one split

`config/split` addresses a multi-config hub dataset (`load_dataset(id, config, split=split)`) or, in a
local directory that mirrors the hub repository, the file `DIR/<config>/<split>.<ext>`; a bare name is
`DIR/<name>.<ext>` (TOFU's and the synthetic world's flat layout) or the hub config `name`, split `train`.
A `.json` file may hold a JSON list or JSON Lines (TOFU publishes JSON Lines named `.json`): the content
decides, never the extension. Every record is validated: a missing field, an empty split or unreadable
JSON is a one-line `ObliviateError` naming the file, the record and the field; `data/schemas.py`
declares each record type (strict: a string is never a list, a bool never an index).
"""

from __future__ import annotations

from pathlib import Path

from obliviate import ObliviateError
from obliviate.data.schemas import PerturbedQARecord, QARecord, Record, check_records
from obliviate.reader import read_json_or_lines

TOFU_HUB_ID = "locuslab/TOFU"


def split_schema(split: str) -> type[Record]:
    """The schema a split's records must fit: QA always; truth-ratio splits also the paraphrase and perturbations."""
    return PerturbedQARecord if split.endswith("_perturbed") else QARecord


def read_records(path: Path) -> list:
    """Records of a JSON list, a {"data": [...]} object or JSON Lines, whatever the extension says (the
    encoding is detected first: UTF-8 with or without BOM, UTF-16), or of a `.parquet` file."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        except OSError as e:
            raise ObliviateError(f"{path}: cannot read ({e.strerror or e})") from None
        except Exception as e:  # a broken parquet file
            raise ObliviateError(f"{path}: not a readable parquet file ({str(e).splitlines()[0] if str(e) else e})"
                                 ) from None
    data = read_json_or_lines(path)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    elif isinstance(data, dict):  # JSON Lines holding one record
        data = [data]
    if not isinstance(data, list):
        raise ObliviateError(f"{path}: expected a JSON list of records (or JSON lines), got {type(data).__name__}")
    return data


SPLIT_EXTS = (".json", ".jsonl", ".parquet")
_NOT_SPLITS = ("world", "refusals", "run")


def split_file(root: Path, split: str) -> Path | None:
    """`root/<split>.<ext>` (split may be `config/split`), or None."""
    for ext in SPLIT_EXTS:
        if (root / f"{split}{ext}").is_file():
            return root / f"{split}{ext}"
    return None


def _split_file(root: Path, split: str) -> Path:
    f = split_file(root, split)
    if f is not None:
        return f
    have = sorted(str(p.relative_to(root).with_suffix("")) for ext in SPLIT_EXTS for p in root.rglob(f"*{ext}")
                  if p.stem not in _NOT_SPLITS)
    raise ObliviateError(f"{root}: no split '{split}' ({split}.json, .jsonl or .parquet); "
                         f"available: {', '.join(have[:30]) or 'none'}")


def is_hub_id(data: str | Path) -> bool:
    """'owner/name' that is not a local path."""
    s = str(data)
    return s.count("/") == 1 and not s.startswith((".", "/", "~")) and not Path(s).exists()


def hub_address(split: str) -> tuple[str, str]:
    """(config, split) of a hub dataset: 'config/split' as given; a bare name is TOFU's (config, 'train')."""
    config, _, part = split.partition("/")
    return (config, part) if part else (split, "train")


def load_hub(hub_id: str, config: str, split: str, *, where: str = "", hint: str | None = None) -> list[dict]:
    """`datasets.load_dataset(hub_id, config, split=split)` as plain records; any failure is one line."""
    try:
        import datasets

        from obliviate.rundir import library_bars_off

        with library_bars_off("datasets"):  # its "Generating split" bars inside a command's own
            return [dict(r) for r in datasets.load_dataset(hub_id, config, split=split)]
    except Exception as e:  # network, unknown id, unknown config: one line for the user
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        hint = hint or "offline? pass a local directory that mirrors the hub repository instead"
        raise ObliviateError(f"{where}cannot load config '{config}' split '{split}' of '{hub_id}' from the hub "
                             f"({msg}); {hint}") from None


def _load_hub(data: str, split: str) -> list[dict]:
    """'config/split' of a hub dataset; a bare TOFU split name is its config (split 'train')."""
    return load_hub(data, *hub_address(split))


def load_split(data: str | Path, split: str | None = None, *, schema: type[Record] | None = None) -> list[dict]:
    """Records of `split` from a directory of `<split>.json[l]`, one local file, or a hub dataset id.

    `split` may join several splits with '+'. `schema` (`data/schemas.py`) overrides the split's schema.
    """
    path = Path(data)
    if split and "+" in split:
        return [r for part in split.split("+") for r in load_split(data, part, schema=schema)]
    schema = schema or split_schema(split or path.stem)
    if path.is_file():
        source, records = str(path), read_records(path)
    elif path.is_dir():
        if not split:
            raise ObliviateError(f"{path}: a directory needs a split name")
        f = _split_file(path, split)
        source, records = str(f), read_records(f)
    elif is_hub_id(data) and split:
        source, records = f"{data}:{split}", _load_hub(str(data), split)
    else:
        raise ObliviateError(f"{data}: no such file or directory")
    return check_records(records, schema, source)


def load_refusals(data: str | Path | None = None) -> list[str]:
    """Refusal phrasings: `refusals.json` beside a world's splits if present, else the packaged list."""
    if data is not None and Path(data).is_dir() and (Path(data) / "refusals.json").is_file():
        f = Path(data) / "refusals.json"
        out = read_records(f)
        if not out or not all(isinstance(x, str) and x.strip() for x in out):
            raise ObliviateError(f"{f}: expected a non-empty JSON list of strings")
        return out
    from obliviate.data.world import refusals

    return refusals()
