"""Which records play which evaluation role, resolved and loaded once, up front.

    roles = resolve_roles("tofu", "data/demo", EvalConfig(forget="forget10"))
    roles.found["forget"]  == Loaded(source="forget10_perturbed", records=[...], format="qa")
    roles.missing["real_authors"] == "data/demo has no split 'real_authors_perturbed'"
    roles = resolve_roles("muse-news", {"verbmem": [...], "knowmem_forget": [...]}, cfg)   # records in memory

TOFU-schema benchmarks (`world`, `tofu`) take their roles from `EvalConfig`: ``forget``
(``forget10_perturbed``, else ``forget10``), ``holdout`` (``holdout10``: MIA non-members), ``retain``
(``retain_perturbed``), ``world_facts``, ``real_authors`` (the synthetic world has none, so Model Utility
there has 6 values, not 9), plus the optional ``verbmem`` / ``knowmem`` (+ ``knowmem_icl``) / ``mcq``
splits. Other benchmarks take every evaluation role of their `Benchmark` record. A role whose data is
missing is recorded with the reason (its metrics become "not computed"); a broken file is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from obliviate import ObliviateError
from obliviate.data.benchmarks import FORMAT_FIELDS, Benchmark, get_benchmark, load_role
from obliviate.data.loading import MCQ_FIELDS, load_split, split_file, validate_records
from obliviate.evaluate.config import EvalConfig

TOFU_ROLES = ("forget", "holdout", "retain", "world_facts", "real_authors")
UTILITY_ROLES = ("retain", "real_authors", "world_facts")
NORMALISED_PROB_ROLES = ("world_facts", "real_authors")  # TOFU: p_true / (p_true + Σ p_pert) there


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


def _load_split_role(data, split: str, fields=None) -> tuple[list[dict] | None, str]:
    ok, reason = _split_exists(data, split)
    if not ok:
        return None, reason
    try:
        return load_split(data, split, fields=fields), ""
    except ObliviateError as e:
        if Path(data).exists():  # a broken local file is an error, a missing hub split is not
            raise
        return None, str(e)


def resolve_splits(data, cfg: EvalConfig) -> tuple[dict[str, tuple[str, list[dict]]], dict[str, str]]:
    """TOFU schema: {role: (split name, records)} for every role the data holds, and {role: reason} for the others."""
    found, missing = {}, {}
    if Path(data).is_file():
        found["forget"] = (Path(data).stem, load_split(data))
    else:
        base = cfg.forget.removesuffix("_perturbed")
        candidates = [f"{base}_perturbed", base]
        reason = ""
        for split in candidates:
            records, reason = _load_split_role(data, split)
            if records is not None:
                found["forget"] = (split, records)
                break
        if "forget" not in found:
            raise ObliviateError(f"{data}: forget split not found (tried {', '.join(candidates)}): {reason}")
    wanted = {"holdout": cfg.holdout_split() if not Path(data).is_file() else None, "retain": cfg.retain,
              "world_facts": cfg.world_facts, "real_authors": cfg.real_authors}
    for role, split in wanted.items():
        if split is None:
            missing[role] = "not requested" if Path(data).is_dir() or role != "holdout" else "no holdout split"
            continue
        records, reason = _load_split_role(data, split)
        if records is None:
            missing[role] = reason
        else:
            found[role] = (split, records)
    if cfg.max_items:
        found = {r: (s, recs[: cfg.max_items]) for r, (s, recs) in found.items()}
    return found, missing


def _tofu_roles(data, cfg: EvalConfig) -> Roles:
    found, missing = resolve_splits(data, cfg)
    roles = Roles({r: Loaded(s, recs) for r, (s, recs) in found.items()}, missing, mia=("forget", "holdout"))
    extras = [("verbmem", cfg.verbmem, ("prompt", "gt"), "prompt"), ("knowmem", cfg.knowmem, ("question", "answer"), "qa"),
              ("knowmem_icl", cfg.knowmem_icl, ("question", "answer"), "qa")]
    extras += [(split, split, MCQ_FIELDS, "mcq") for split in cfg.mcq]
    for role, split, fields, fmt in extras:
        if split:
            recs = load_split(data, split, fields=fields)
            roles.found[role] = Loaded(split, recs if role == "knowmem_icl" else recs[: cfg.max_items], fmt)
    if "knowmem" in roles.found:
        roles.knowmem_icl["knowmem"] = "knowmem_icl"
    return roles


def _format_of(records: list[dict]) -> str:
    keys = set(records[0]) if records else set()
    return ("mcq" if {"choices", "answer"} <= keys else "prompt" if {"prompt", "gt"} <= keys
            else "text" if "text" in keys and "question" not in keys else "qa")


def _in_memory(bench: Benchmark, data: dict, cfg: EvalConfig) -> Roles:
    roles = Roles(mia=bench.mia, knowmem_icl=dict(bench.knowmem_icl))
    for role, records in data.items():
        fmt = bench.roles[role].format if role in bench.roles else "qa" if role in TOFU_ROLES else _format_of(records)
        need = FORMAT_FIELDS[fmt] + (("paraphrased_answer", "perturbed_answer")
                                     if role == "forget" and records and "perturbed_answer" in records[0] else ())
        recs = validate_records(list(records), need, f"records of role '{role}'")
        icl = role in bench.knowmem_icl.values() or role == "knowmem_icl"
        roles.found[role] = Loaded(role, recs if icl else recs[: cfg.max_items], fmt)
    if "forget" not in roles.found and bench.tofu_schema:
        raise ObliviateError(f"in-memory records for benchmark {bench.name} need a 'forget' role "
                             f"(got {', '.join(data) or 'none'})")
    for role in (TOFU_ROLES if bench.tofu_schema else bench.eval_roles()):
        if role not in roles.found:
            roles.missing[role] = "no records given for this role"
    if bench.tofu_schema and "knowmem" in roles.found and "knowmem_icl" in roles.found:
        roles.knowmem_icl["knowmem"] = "knowmem_icl"
    return roles


def resolve_roles(bench: Benchmark | str, data, cfg: EvalConfig) -> Roles:
    """Every role's records, loaded once (a path, a hub id, None for the benchmark's hub ids, or {role: records})."""
    bench = get_benchmark(bench) if isinstance(bench, str) else bench
    if isinstance(data, dict):
        return _in_memory(bench, data, cfg)
    if bench.tofu_schema:
        return _tofu_roles(data if data is not None else bench.hub_id, cfg)
    roles = Roles(mia=bench.mia, knowmem_icl=dict(bench.knowmem_icl))
    for role, r in bench.eval_roles().items():
        try:
            recs = load_role(bench, data, role)
        except ObliviateError as e:
            if data is not None and Path(data).is_dir() and ": no file " not in str(e):
                raise  # a broken local file
            roles.missing[role] = str(e)
            continue
        icl = role in bench.knowmem_icl.values()
        roles.found[role] = Loaded(r.address, recs if icl else recs[: cfg.max_items], r.format)
    if not roles.found:
        raise ObliviateError(f"benchmark {bench.name}: no evaluation role could be loaded from "
                             f"{data or bench.hub_id} ({next(iter(roles.missing.values()), '')})")
    return roles


def has_perturbations(records: list[dict], split: str = "split") -> bool:
    """Every record has a non-empty `perturbed_answer` list; some but not all is an error naming the record."""
    have = [isinstance(r.get("perturbed_answer"), list) and bool(r["perturbed_answer"]) for r in records]
    if any(have) and not all(have):
        i = have.index(False)
        raise ObliviateError(f"{split} record {i} ({str(records[i].get('question', ''))[:60]!r}): no perturbed_answer "
                             f"list, while {sum(have)} other records have one (truth ratio needs all or none)")
    return bool(records) and all(have)


def tr_answer_field(role: str, records: list[dict]) -> str:
    """ỹ of the truth ratio: the paraphrased answer on author splits, the answer on world facts / real authors."""
    if role in NORMALISED_PROB_ROLES or not all(r.get("paraphrased_answer") for r in records):
        return "answer"
    return "paraphrased_answer"


def training_record(model, data, forget_records: list[dict]) -> dict | None:
    """{split, forget_items_seen} of a model whose obliviate.json names its training split, found in `data`.

    Lets a later evaluation refuse this model as a retain reference when it has seen the forget items."""
    import json

    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    meta = Path(str(path)) / "obliviate.json" if path else None
    if meta is None or not meta.is_file():
        return None
    split = json.loads(meta.read_text()).get("split")
    if not split or isinstance(data, dict) or data is None or not Path(data).is_dir():
        return {"split": split, "forget_items_seen": None} if split else None
    try:
        trained = load_split(data, split)
    except ObliviateError:
        return {"split": split, "forget_items_seen": None}
    trained_q = {(r.get("question"), r.get("answer")) for r in trained}
    seen = sum((r.get("question"), r.get("answer")) in trained_q for r in forget_records)
    return {"split": split, "forget_items_seen": seen}
