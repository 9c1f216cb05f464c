"""Evaluation's view of a benchmark's roles: the split each split role reads (from `EvalConfig`), and per-role rules.

    roles = resolve_roles("tofu", "data/demo", EvalConfig(forget="forget10"))   # loading: data/roles.py
    roles.found["forget"]  == Loaded(source="forget10_perturbed", records=[...], format="qa")
    roles.missing["real_authors"] == "data/demo has no split 'real_authors_perturbed'"

A benchmark's `split_roles` (TOFU and the world: forget, holdout, retain, world_facts, real_authors) read the
split its `EvalConfig` field of the same name gives (``forget``: ``forget10_perturbed``, else ``forget10``;
``holdout``: ``holdout10`` of the forget level, MIA non-members; the synthetic world has no ``real_authors``,
so Model Utility there has 6 values, not 9); the optional ``verbmem`` / ``knowmem`` (+ ``knowmem_icl``) /
``mcq`` splits of the config are read in any benchmark. Other roles come from the `Benchmark` record.
"""

from __future__ import annotations

from pathlib import Path

from obliviate import ObliviateError
from obliviate.data import roles as data_roles
from obliviate.data.benchmarks import Benchmark, get_benchmark
from obliviate.data.loading import load_split
from obliviate.data.roles import Loaded, Roles  # noqa: F401  (re-exported)
from obliviate.evaluate.config import EvalConfig

UTILITY_ROLES = ("retain", "real_authors", "world_facts")
NORMALISED_PROB_ROLES = ("world_facts", "real_authors")  # TOFU: p_true / (p_true + Σ p_pert) there


def split_names(bench: Benchmark, data, cfg: EvalConfig) -> dict[str, str | None]:
    """The split each of `bench.split_roles` reads: the `cfg` field of its name (holdout: of the forget level;
    none when the data is one file)."""
    one_file = data is not None and Path(data).is_file()
    return {r: (None if one_file else cfg.holdout_split()) if r == "holdout" else getattr(cfg, r)
            for r in bench.split_roles}


def config_extras(cfg: EvalConfig) -> tuple[tuple[str, str, str], ...]:
    """(role, split, format) of the VerbMem / KnowMem / MCQ splits the config names."""
    extras = [("verbmem", cfg.verbmem, "prompt"), ("knowmem", cfg.knowmem, "qa"),
              ("knowmem_icl", cfg.knowmem_icl, "qa")]
    return tuple((r, s, f) for r, s, f in extras if s) + tuple((s, s, "mcq") for s in cfg.mcq)


def resolve_roles(bench: Benchmark | str, data, cfg: EvalConfig) -> Roles:
    """Every role's records, loaded once (a path, a hub id, None for the benchmark's hub ids, or {role: records})."""
    bench = get_benchmark(bench) if isinstance(bench, str) else bench
    if isinstance(data, dict):
        return data_roles.resolve_roles(bench, data, {}, max_items=cfg.max_items)
    return data_roles.resolve_roles(bench, data, split_names(bench, data, cfg), extras=config_extras(cfg),
                                    max_items=cfg.max_items)


def resolve_splits(data, cfg: EvalConfig, bench: Benchmark | str = "tofu"
                   ) -> tuple[dict[str, tuple[str, list[dict]]], dict[str, str]]:
    """{role: (split name, records)} of the split roles (default TOFU's) the data holds, {role: reason} for the rest."""
    bench = get_benchmark(bench) if isinstance(bench, str) else bench
    return data_roles.resolve_splits(data, split_names(bench, data, cfg), cfg.max_items)


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
    from obliviate.models.loading import read_json

    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    meta = Path(str(path)) / "obliviate.json" if path else None
    if meta is None or not meta.is_file():
        return None
    split = read_json(meta).get("split")
    if not split or isinstance(data, dict) or data is None or not Path(data).is_dir():
        return {"split": split, "forget_items_seen": None} if split else None
    try:
        trained = load_split(data, split)
    except ObliviateError:
        return {"split": split, "forget_items_seen": None}
    trained_q = {(r.get("question"), r.get("answer")) for r in trained}
    seen = sum((r.get("question"), r.get("answer")) in trained_q for r in forget_records)
    return {"split": split, "forget_items_seen": seen}
