"""Which records play which evaluation role of a `Benchmark`, resolved and loaded once, up front.

    roles = resolve_roles("tofu", "data/demo", {"forget": "forget10", "holdout": "holdout10", "retain": None})
    roles.found["forget"]  == Loaded(source="forget10_perturbed", records=[...], format="qa")
    roles.missing["retain"] == "not requested"
    roles = resolve_roles("muse-news", "copies/muse-news", {})         # every role of the record
    roles = resolve_roles("muse-news", {"verbmem": [...], "knowmem": [...]}, {})   # records in memory

A benchmark's roles come from its record: `split_roles` are read by split name (`splits` gives each one's split,
e.g. EvalConfig's forget level: TOFU's forget — its `_perturbed` twin first —, holdout, retain, world_facts,
real_authors), the other evaluation roles from `roles` (published config/split). `extras` adds roles read by
split name in any benchmark (VerbMem / KnowMem / MCQ splits). A role whose data is missing is recorded with
the reason (its metrics become "not computed"); a broken file is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from obliviate import ObliviateError
from obliviate.data.benchmarks import FORMAT_SCHEMAS, Benchmark, get_benchmark, load_role
from obliviate.data.loading import load_split, split_file
from obliviate.data.schemas import PerturbedQARecord, check_records


@dataclass
class Loaded:
    source: str
    records: list[dict]
    format: str = "qa"


@dataclass
class Roles:
    found: dict[str, Loaded] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    knowmem_icl: dict[str, str] = field(default_factory=dict)  # knowmem role -> its few-shot role
    mia: tuple[str, str] | None = None  # (members, non-members)


def _split_exists(data: str | Path, split: str) -> tuple[bool, str]:
    path = Path(data)
    if path.is_dir():
        ok = split_file(path, split) is not None
        return ok, "" if ok else f"{path} has no split '{split}'"
    if path.is_file():
        return False, f"{path} is a single file (used as the forget split)"
    return True, ""  # a hub id: try it


def _load_split_role(data, split: str, schema=None) -> tuple[list[dict] | None, str]:
    ok, reason = _split_exists(data, split)
    if not ok:
        return None, reason
    try:
        return load_split(data, split, schema=schema), ""
    except ObliviateError as e:
        if Path(data).exists():  # a broken local file is an error, a missing hub split is not
            raise
        return None, str(e)


def _forget_split(data, forget: str) -> tuple[str, list[dict]]:
    """The forget role: one local file as given, else the split's `_perturbed` twin (truth ratio), else itself."""
    if Path(data).is_file():
        return Path(data).stem, load_split(data)
    base = forget.removesuffix("_perturbed")
    candidates = [f"{base}_perturbed", base]
    reason = ""
    for split in candidates:
        records, reason = _load_split_role(data, split)
        if records is not None:
            return split, records
    raise ObliviateError(f"{data}: forget split not found (tried {', '.join(candidates)}): {reason}")


def resolve_splits(data, splits: dict[str, str | None], max_items: int | None = None
                   ) -> tuple[dict[str, tuple[str, list[dict]]], dict[str, str]]:
    """{role: (split name, records)} for every role of `splits` the data holds, {role: reason} for the others."""
    found, missing = {}, {}
    for role, split in splits.items():
        if role == "forget":
            found["forget"] = _forget_split(data, split)
            continue
        if split is None:
            missing[role] = "not requested" if Path(data).is_dir() or role != "holdout" else "no holdout split"
            continue
        records, reason = _load_split_role(data, split)
        if records is None:
            missing[role] = reason
        else:
            found[role] = (split, records)
    if max_items:
        found = {r: (s, recs[: max_items]) for r, (s, recs) in found.items()}
    return found, missing


def _format_of(records: list[dict]) -> str:
    keys = set(records[0]) if records else set()
    return ("mcq" if {"choices", "answer"} <= keys else "prompt" if {"prompt", "gt"} <= keys
            else "text" if "text" in keys and "question" not in keys else "qa")


def _in_memory(bench: Benchmark, data: dict, max_items: int | None) -> Roles:
    roles = Roles(mia=bench.mia, knowmem_icl=dict(bench.knowmem_icl))
    for role, records in data.items():
        fmt = (bench.roles[role].format if role in bench.roles else "qa" if role in bench.split_roles
               else _format_of(records))
        perturbed = role == "forget" and records and isinstance(records[0], dict) and "perturbed_answer" in records[0]
        schema = PerturbedQARecord if perturbed else FORMAT_SCHEMAS[fmt]
        recs = check_records(list(records), schema, f"records of role '{role}'")
        icl = role in bench.knowmem_icl.values() or role == "knowmem_icl"
        roles.found[role] = Loaded(role, recs if icl else recs[: max_items], fmt)
    if "forget" not in roles.found and "forget" in bench.split_roles:
        raise ObliviateError(f"in-memory records for benchmark {bench.name} need a 'forget' role "
                             f"(got {', '.join(data) or 'none'})")
    for role in (*bench.split_roles, *bench.eval_roles()):
        if role not in roles.found:
            roles.missing[role] = "no records given for this role"
    if "knowmem" in roles.found and "knowmem_icl" in roles.found:
        roles.knowmem_icl.setdefault("knowmem", "knowmem_icl")
    return roles


def _record_roles(bench: Benchmark, data, roles: Roles, max_items: int | None) -> None:
    """The record's published evaluation roles (config/split) into `roles`."""
    for role, r in bench.eval_roles().items():
        try:
            recs = load_role(bench, data, role)
        except ObliviateError as e:
            if data is not None and Path(data).is_dir() and ": no file " not in str(e):
                raise  # a broken local file
            roles.missing[role] = str(e)
            continue
        icl = role in bench.knowmem_icl.values()
        roles.found[role] = Loaded(r.address, recs if icl else recs[: max_items], r.format)


def resolve_roles(bench: Benchmark | str, data, splits: dict[str, str | None], *,
                  extras: tuple[tuple[str, str, str], ...] = (), max_items: int | None = None) -> Roles:
    """Every role's records, loaded once (`data`: a path, a hub id, None for the benchmark's hub ids, or
    {role: records}). `splits`: the split of each of `bench.split_roles`; `extras`: (role, split, format)."""
    bench = get_benchmark(bench) if isinstance(bench, str) else bench
    if isinstance(data, dict):
        return _in_memory(bench, data, max_items)
    source = data if data is not None else bench.hub_id
    found, missing = resolve_splits(source, splits, max_items)
    roles = Roles({r: Loaded(s, recs) for r, (s, recs) in found.items()}, missing, dict(bench.knowmem_icl),
                  bench.mia)
    _record_roles(bench, data, roles, max_items)
    for role, split, fmt in extras:
        recs = load_split(source, split, schema=FORMAT_SCHEMAS[fmt])
        roles.found[role] = Loaded(split, recs if role == "knowmem_icl" else recs[: max_items], fmt)
    if "knowmem" in roles.found and "knowmem" not in roles.knowmem_icl:
        roles.knowmem_icl["knowmem"] = "knowmem_icl"
    if not roles.found:
        raise ObliviateError(f"benchmark {bench.name}: no evaluation role could be loaded from "
                             f"{data or bench.hub_id} ({next(iter(roles.missing.values()), '')})")
    return roles
