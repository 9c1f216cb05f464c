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

Invariants between roles (an item is identified by its question or text and its answer, `record_key`):
- MIA members and non-members share no item (`check_mia_roles`): the same set on both sides (`--holdout forget10`)
  is an error, some shared items a warning with the count (they sit on both sides of the AUC).
- The forget and retain sets of unlearning share no item (`disjoint_retain`): a retain set holding *every* forget
  item and more is a whole-set split (TOFU's `full` contains every forgetXX by construction): a warning with the
  counts, and the retain term trains on the retain set minus the forget items (= TOFU's retainXX). Any other
  overlap (two splits that should be disjoint, or the forget split itself as retain) is an error.
- In evaluation, a retain role sharing items with the forget role is a warning with the count: Model Utility then
  reads some forget items.
"""

from __future__ import annotations

import warnings
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


def record_key(record: dict) -> tuple:
    """What identifies an item across splits: (question | text | prompt, answer | gt)."""
    return (record.get("question", record.get("text", record.get("prompt"))), record.get("answer", record.get("gt")))


def _shared(a: list[dict], b: list[dict]) -> set[tuple]:
    return {record_key(r) for r in a} & {record_key(r) for r in b}


def check_mia_roles(members: list[dict], nonmembers: list[dict], names: tuple[str, str] = ("forget", "holdout")
                    ) -> None:
    """Members = non-members is an error (the AUC would be 0.5 by construction); a partial overlap, a warning."""
    shared = _shared(members, nonmembers)
    if not shared:
        return
    if shared == {record_key(r) for r in members} == {record_key(r) for r in nonmembers}:
        raise ObliviateError(f"MIA members ({names[0]}) and non-members ({names[1]}) are the same {len(shared)} "
                             "items: the attack would compare a set with itself; choose a holdout split of unseen "
                             "items (e.g. holdout10)")
    warnings.warn(f"{len(shared)} items are both MIA members ({names[0]}, {len(members)} items) and non-members "
                  f"({names[1]}, {len(nonmembers)} items)", stacklevel=2)


def disjoint_retain(forget: list[dict], retain: list[dict] | None, names: tuple[str, str] = ("forget", "retain")
                    ) -> list[dict] | None:
    """The retain records to train on: `retain` when it shares no item with `forget`; `retain` minus the forget
    items (with a warning) when it holds every forget item and more (a whole-set split such as TOFU's full);
    any other overlap is an error."""
    if not retain:
        return retain
    keys = {record_key(r) for r in forget}
    shared = _shared(forget, retain)
    if not shared:
        return retain
    rest = [r for r in retain if record_key(r) not in keys]
    if shared == keys and rest:
        warnings.warn(f"the {names[1]} set holds all {len(keys)} {names[0]} items ({len(retain) - len(rest)} of its "
                      f"{len(retain)} records; a whole-set split such as TOFU's full contains every forget split): "
                      f"the retain term trains on the other {len(rest)}", stacklevel=2)
        return rest
    raise ObliviateError(f"the {names[0]} and {names[1]} sets share {len(shared)} items (of {len(keys)} {names[0]} "
                         f"items): an item cannot be both forgotten and retained; choose disjoint splits (e.g. "
                         "forget10 with retain90)")


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
        roles = _in_memory(bench, data, max_items)
        _check_roles(roles)
        return roles
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
    _check_roles(roles)
    return roles


def _check_roles(roles: Roles) -> None:
    """The invariants between roles (module docstring): MIA sides disjoint, retain apart from forget."""
    if roles.mia and all(r in roles.found for r in roles.mia):
        members, nonmembers = (roles.found[r] for r in roles.mia)
        check_mia_roles(members.records, nonmembers.records, (members.source, nonmembers.source))
    if "forget" in roles.found and "retain" in roles.found:
        shared = _shared(roles.found["forget"].records, roles.found["retain"].records)
        if shared:
            warnings.warn(f"the retain role ({roles.found['retain'].source}) shares {len(shared)} items with the "
                          f"forget role ({roles.found['forget'].source}): Model Utility reads them too", stacklevel=3)
