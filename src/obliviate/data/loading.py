"""Data loading in one place: the synthetic world's files, TOFU from the hub, or local JSON/JSONL.

    records = load_split("data/demo", "forget10")           # a world directory
    records = load_split("data/demo", "full+world_facts")   # '+' concatenates splits
    records = load_split("locuslab/TOFU", "forget10")       # the hub (needs the network)
    records = load_split("my_qa.jsonl")                     # one local file is one split

Every record is validated: a missing field, an empty split or unreadable JSON is a
one-line `ObliviateError` naming the file, the record and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

from obliviate import ObliviateError

QA_FIELDS = ("question", "answer")
EVAL_FIELDS = ("paraphrased_answer", "perturbed_answer")
MCQ_FIELDS = ("question", "choices", "answer")
TOFU_HUB_ID = "locuslab/TOFU"


def required_fields(split: str) -> tuple[str, ...]:
    """Fields a split must carry: QA always; truth-ratio splits also the paraphrase and perturbations."""
    if split.endswith("_perturbed"):
        return QA_FIELDS + EVAL_FIELDS
    return QA_FIELDS


def _read_json_records(path: Path) -> list:
    try:
        text = path.read_text()
    except OSError as e:
        raise ObliviateError(f"{path}: cannot read ({e.strerror})") from None
    if path.suffix == ".jsonl":
        records = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ObliviateError(f"{path}: line {i}: not valid JSON ({e.msg})") from None
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ObliviateError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ObliviateError(f"{path}: expected a JSON list of records (or JSON lines)")
    return data


def validate_records(records: list, fields: tuple[str, ...], source: str) -> list[dict]:
    """Check each record has non-empty `fields` of the right type; return the records."""
    if not records:
        raise ObliviateError(f"{source}: the split is empty")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ObliviateError(f"{source}: record {i}: expected an object, got {type(rec).__name__}")
        for f in fields:
            if f not in rec or rec[f] is None:
                raise ObliviateError(f"{source}: record {i}: missing field '{f}'")
            v = rec[f]
            if f in ("perturbed_answer", "choices"):
                if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
                    raise ObliviateError(f"{source}: record {i}: field '{f}' must be a non-empty list of strings")
            elif f == "answer" and "choices" in fields:
                if not isinstance(v, int):
                    raise ObliviateError(f"{source}: record {i}: field 'answer' must be the index of the right choice")
            elif not isinstance(v, str) or not v.strip():
                raise ObliviateError(f"{source}: record {i}: field '{f}' must be a non-empty string")
    return records


def _split_file(root: Path, split: str) -> Path:
    for ext in (".json", ".jsonl"):
        if (root / f"{split}{ext}").is_file():
            return root / f"{split}{ext}"
    have = sorted(p.stem for p in root.glob("*.json*") if p.stem not in ("world", "refusals", "run"))
    raise ObliviateError(f"{root}: no split '{split}' ({split}.json or .jsonl); available: {', '.join(have) or 'none'}")


def _load_hub(data: str, split: str) -> list[dict]:
    """TOFU (and other hub datasets in its schema): each TOFU split is a dataset config with one 'train' split."""
    try:
        import datasets

        ds = datasets.load_dataset(data, split)
        part = ds["train"] if "train" in ds else ds[next(iter(ds))]
        return [dict(r) for r in part]
    except Exception as e:  # network, unknown id, unknown config: one line for the user
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ObliviateError(f"cannot load split '{split}' of '{data}' from the hub ({msg}); "
                             "offline? pass a local directory or JSON file instead") from None


def load_split(data: str | Path, split: str | None = None, *, fields: tuple[str, ...] | None = None) -> list[dict]:
    """Records of `split` from a directory of `<split>.json[l]`, one local file, or a hub dataset id.

    `split` may join several splits with '+'. `fields` overrides the required fields.
    """
    path = Path(data)
    if split and "+" in split:
        return [r for part in split.split("+") for r in load_split(data, part, fields=fields)]
    need = fields or required_fields(split or path.stem)
    if path.is_file():
        source, records = str(path), _read_json_records(path)
    elif path.is_dir():
        if not split:
            raise ObliviateError(f"{path}: a directory needs a split name")
        f = _split_file(path, split)
        source, records = str(f), _read_json_records(f)
    elif str(data).count("/") == 1 and not str(data).startswith((".", "/")) and split:
        source, records = f"{data}:{split}", _load_hub(str(data), split)
    else:
        raise ObliviateError(f"{data}: no such file or directory")
    return validate_records(records, need, source)


def load_refusals(data: str | Path | None = None) -> list[str]:
    """Refusal phrasings: `refusals.json` beside a world's splits if present, else the packaged list."""
    if data is not None and Path(data).is_dir() and (Path(data) / "refusals.json").is_file():
        f = Path(data) / "refusals.json"
        out = _read_json_records(f)
        if not out or not all(isinstance(x, str) and x.strip() for x in out):
            raise ObliviateError(f"{f}: expected a non-empty JSON list of strings")
        return out
    from obliviate.data.world import refusals

    return refusals()
