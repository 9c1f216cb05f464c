"""Published benchmarks as records: one `Benchmark` per benchmark in `BENCHMARKS`.

    bench = BENCHMARKS["muse-news"]
    recs = load_role(bench, "muse-bench/MUSE-News", "forget_train")   # load_dataset(id, "raw", split="forget")
    recs = load_role(bench, "copies/muse-news", "forget_train")        # copies/muse-news/raw/forget.json[l]

A benchmark says which published config/split plays each role, how that role's records are formatted
and which metrics read it (SPEC §2–§3):

* `qa`     — question/answer through the chat template (TOFU, RWKU probes, MUSE KnowMem with ICL shots),
* `text`   — raw text; unlearning tokenizes and chunks it to `max_length` (MUSE raw, WMDP corpora);
  evaluation scores each text for MIA (MUSE privleak, RWKU mia),
* `prompt` — continuation prompt + ground truth (MUSE VerbMem),
* `mcq`    — question, choices, answer index (WMDP, MMLU).

Roles for unlearning: `forget_train`, `retain_train` (or, by split name, `train_splits`: TOFU's forget10 /
retain90). Evaluation roles are the other keys of `roles`, plus `split_roles`, read by split name (TOFU and the
synthetic world: forget, holdout, retain, world_facts, real_authors, whose splits `EvalConfig` picks from the
forget level); `metrics` says what evaluation computes on each role (`data/roles.py` loads them).
Data addressing: the hub id (each role's own `hub_id` when it lives in another repository) or a local
directory mirroring the hub repository, `DIR/<config>/<split>.json|.jsonl|.parquet` (TOFU and the synthetic
world: flat `DIR/<config>.json`). Every loader error is one line naming benchmark, config/split and file.
Adding a benchmark = one record here + fixtures under tests/fixtures/<name>/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from obliviate import ObliviateError
from obliviate.data.loading import is_hub_id, load_hub, load_split, read_records, split_file
from obliviate.data.schemas import SCHEMAS, check_records

FORMATS = ("qa", "text", "prompt", "mcq")
FORMAT_SCHEMAS = {fmt: SCHEMAS[fmt] for fmt in FORMATS}  # each role format's record schema (data/schemas.py)
FORMAT_FIELDS = {fmt: tuple(name for name, f in schema.model_fields.items() if f.is_required())
                 for fmt, schema in FORMAT_SCHEMAS.items()}
WMDP_BIO_GATED = ("the WMDP bio forget corpus is gated: request access at "
                  "https://huggingface.co/datasets/cais/wmdp-bio-forget-corpus, log in with `huggingface-cli login`"
                  " and pass --data cais/wmdp, or save its JSONL as DIR/bio-forget-corpus/train.jsonl")


@dataclass(frozen=True)
class Role:
    """Where one role's records live and how they are read.

    config/split: as published (`load_dataset(hub_id, config, split=split)`); `local`: the file under a local
    directory (default `<config>/<split>`); `rename`: published field → canonical field (RWKU `query` →
    `question`); `gated`: how to obtain data the hub will not serve without an access request.
    """

    config: str
    split: str
    format: str
    hub_id: str | None = None
    local: str | None = None
    rename: tuple[tuple[str, str], ...] = ()
    gated: str | None = None

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"role format {self.format!r} not in {FORMATS}")

    @property
    def address(self) -> str:
        return f"{self.config}/{self.split}"

    def path(self) -> str:
        return self.local or self.address


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its hub id, the role → split map, and the metrics reported on each role."""

    name: str
    hub_id: str | None
    summary: str
    roles: dict[str, Role] = field(default_factory=dict)
    metrics: dict[str, tuple[str, ...]] = field(default_factory=dict)  # role -> METRICS keys computed there
    split_roles: tuple[str, ...] = ()  # evaluation roles read by split name (EvalConfig's field of that name)
    train_splits: dict[str, str] = field(default_factory=dict)  # forget_train / retain_train -> default split name
    signature: tuple[str, ...] = ()  # files that identify a local copy (default: every evaluation role's file)
    privleak_reference_auc: float | None = None  # MUSE's published AUC_retrain when no retain model
    mia: tuple[str, str] | None = None  # (members, non-members) roles of the MIA AUC / PrivLeak
    knowmem_icl: dict[str, str] = field(default_factory=dict)  # knowmem role -> its few-shot role
    notes: str = ""

    @property
    def doc(self) -> str:
        """One line for `obliviate ls`."""
        return f"{self.summary} [{self.hub_id or 'offline'}]"

    def eval_roles(self) -> dict[str, Role]:
        return {k: r for k, r in self.roles.items() if k not in ("forget_train", "retain_train")}

    def local_files(self) -> tuple[str, ...]:
        """The split files (without extension) whose presence says a directory holds this benchmark."""
        return self.signature or tuple(r.path() for r in self.eval_roles().values())


TOFU_SPLIT_ROLES = ("forget", "holdout", "retain", "world_facts", "real_authors")


def _tofu(name: str, hub_id: str | None, summary: str, signature: tuple[str, ...], notes: str = "") -> Benchmark:
    # TOFU's roles depend on the forget level (forget10 → holdout10, retain90): EvalConfig / --forget pick them.
    return Benchmark(name, hub_id, summary, notes=notes, mia=("forget", "holdout"), split_roles=TOFU_SPLIT_ROLES,
                     train_splits={"forget_train": "forget10", "retain_train": "retain90"}, signature=signature,
                     metrics={
        "forget": ("rouge_l_recall", "prob", "truth_ratio", "token_entropy", "cosine_similarity", "entailment_score",
                   "extraction_strength", "exact_memorization", "forget_quality", "forget_efficacy"),
        "holdout": ("mia_auc", "privleak"),
        "retain": ("rouge_l_recall", "prob", "truth_ratio", "model_utility", "mu18"),
        "world_facts": ("rouge_l_recall", "prob", "truth_ratio", "model_utility", "mu18"),
        "real_authors": ("rouge_l_recall", "prob", "truth_ratio", "model_utility", "mu18")})


def _muse(name: str, hub_id: str, ref_auc: float, summary: str) -> Benchmark:
    return Benchmark(name, hub_id, summary, privleak_reference_auc=ref_auc,
                     mia=("privleak_forget", "privleak_holdout"),
                     knowmem_icl={"knowmem": "knowmem_icl", "knowmem_retain": "knowmem_retain_icl"},
                     roles={"forget_train": Role("raw", "forget", "text"),
                            "retain_train": Role("raw", "retain1", "text"),
                            "verbmem": Role("verbmem", "forget", "prompt"),
                            "knowmem": Role("knowmem", "forget_qa", "qa"),
                            "knowmem_retain": Role("knowmem", "retain_qa", "qa"),
                            "knowmem_icl": Role("knowmem", "forget_qa_icl", "qa"),
                            "knowmem_retain_icl": Role("knowmem", "retain_qa_icl", "qa"),
                            "privleak_forget": Role("privleak", "forget", "text"),
                            "privleak_holdout": Role("privleak", "holdout", "text")},
                     metrics={"verbmem": ("verbmem",), "knowmem": ("knowmem",),
                              "knowmem_retain": ("knowmem_retain",), "privleak_forget": ("mia_auc", "privleak")})


_RWKU_QA = (("query", "question"),)
BENCHMARKS: dict[str, Benchmark] = {
    "world": _tofu("world", None, "the synthetic world (obliviate world): fictitious authors, TOFU schema",
                   ("world",), notes="no real_authors split: Model Utility has 6 of TOFU's 9 values"),
    "tofu": _tofu("tofu", "locuslab/TOFU", "TOFU (Maini et al. 2024): fictitious authors, QA",
                  ("real_authors_perturbed",), notes="hub configs forget01/05/10, retain99/95/90, *_perturbed, holdout01/05/10, split train"),
    "muse-news": _muse("muse-news", "muse-bench/MUSE-News", 0.4772, "MUSE-News (Shi et al. 2024): BBC news text"),
    "muse-books": _muse("muse-books", "muse-bench/MUSE-Books", 0.5393, "MUSE-Books: Harry Potter books text"),
    "wmdp": Benchmark(
        "wmdp", "cais/wmdp", "WMDP (Li et al. 2024): hazardous-knowledge MCQ + forget/retain corpora (RMU)",
        roles={"forget_train": Role("cyber-forget-corpus", "train", "text", hub_id="cais/wmdp-corpora"),
               "retain_train": Role("cyber-retain-corpus", "train", "text", hub_id="cais/wmdp-corpora"),
               "wmdp_bio": Role("wmdp-bio", "test", "mcq"),
               "wmdp_cyber": Role("wmdp-cyber", "test", "mcq"),
               "wmdp_chem": Role("wmdp-chem", "test", "mcq"),
               "mmlu": Role("all", "test", "mcq", hub_id="cais/mmlu", local="mmlu/test")},
        metrics={"wmdp_bio": ("mcq_accuracy",), "wmdp_cyber": ("mcq_accuracy",), "wmdp_chem": ("mcq_accuracy",),
                 "mmlu": ("mcq_accuracy",)},
        notes="bio forget corpus: forget_train=bio-forget-corpus/train (gated); " + WMDP_BIO_GATED),
    "rwku": Benchmark(
        "rwku", "jinzhuoran/RWKU", "RWKU (Jin et al. 2024): real-world famous people, no retain corpus",
        mia=("mia_forget", "mia_retain"),
        roles={"forget_train": Role("forget_target", "train", "text", rename=(("intro", "text"),)),
               "forget_level1": Role("forget_level1", "test", "qa", rename=_RWKU_QA),
               "forget_level2": Role("forget_level2", "test", "qa", rename=_RWKU_QA),
               "forget_level3": Role("forget_level3", "test", "qa", rename=_RWKU_QA),
               "neighbor_level1": Role("neighbor_level1", "test", "qa", rename=_RWKU_QA),
               "neighbor_level2": Role("neighbor_level2", "test", "qa", rename=_RWKU_QA),
               "mia_forget": Role("mia_forget", "test", "text"),
               "mia_retain": Role("mia_retain", "test", "text")},
        metrics={**{f"forget_level{i}": ("rouge_l_recall",) for i in (1, 2, 3)},
                 **{f"neighbor_level{i}": ("rouge_l_recall",) for i in (1, 2)}, "mia_forget": ("mia_auc",)},
        notes="zero-shot setting: no retain corpus, so recipes with a retain regulariser (gd, kl, rmu) need --retain"),
}
# The bio forget corpus as a role users can select (`forget_train=bio-forget-corpus/train`).
WMDP_BIO_FORGET = Role("bio-forget-corpus", "train", "text", hub_id="cais/wmdp-bio-forget-corpus",
                       gated=WMDP_BIO_GATED)


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ObliviateError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def infer_benchmark(data) -> str:
    """The benchmark of `data`: records in memory are the world's; a hub id a record names; a directory holding
    the files one record declares (`Benchmark.local_files`: world.json → world, real_authors_perturbed → tofu,
    every evaluation role's file → muse / wmdp / rwku); else flat QA splits (a directory: world; a file or an
    unknown hub id: tofu). Two records declaring the same files (MUSE News / Books) need `--benchmark`."""
    if isinstance(data, dict):
        return "world"
    s = str(data).rstrip("/")
    for b in BENCHMARKS.values():
        if b.hub_id and s == b.hub_id:
            return b.name
    path = Path(s)
    if path.is_dir():
        match = [b.name for b in BENCHMARKS.values()
                 if b.local_files() and all(split_file(path, f) for f in b.local_files())]
        if len(match) > 1:
            raise ObliviateError(f"{path}: laid out like each of {', '.join(match)}: pass --benchmark to choose")
        if match:
            return match[0]
    return "tofu" if is_hub_id(s) or path.is_file() else "world"


# how a user names an unlearning set the benchmark lacks
TRAIN_FLAGS = {"forget_train": "--forget config/split",
               "retain_train": "--retain config/split, or a recipe without a retain regulariser (gd, kl, ap, rmu)"}


def _role_for(bench: Benchmark, role: str, split: str | None) -> Role:
    """The Role record, or an override `config/split` given by the user (same format as the default role)."""
    base = bench.roles.get(role)
    if split is None:
        if base is None and role in TRAIN_FLAGS:
            raise ObliviateError(f"no {role.removesuffix('_train')} set: benchmark {bench.name} has none (role "
                                 f"'{role}'); pass {TRAIN_FLAGS[role]}")
        if base is None:
            raise ObliviateError(f"benchmark {bench.name} has no role '{role}'")
        return base
    if split == WMDP_BIO_FORGET.address:
        return WMDP_BIO_FORGET
    config, _, part = split.partition("/")
    fmt = base.format if base is not None else "qa"
    return Role(config, part or "train", fmt, hub_id=base.hub_id if base else None,
                rename=base.rename if base else ())


def load_role(bench: Benchmark | str, data, role: str, *, split: str | None = None,
              max_items: int | None = None) -> list[dict]:
    """Records of `role` (canonical fields of its format) from the hub or a local mirror of the hub repo.

    `data`: a local directory, None (the benchmark's hub ids), or the benchmark's hub id.
    `split`: `config/split` overriding the role's published address.
    """
    bench = get_benchmark(bench) if isinstance(bench, str) else bench
    r = _role_for(bench, role, split)
    where = f"benchmark {bench.name}, role {role} ({r.address})"
    if data is None or (bench.hub_id and str(data) == bench.hub_id):
        records, source = _load_hub_role(bench, r, where), f"{r.hub_id or bench.hub_id}:{r.address}"
    elif Path(data).is_dir():
        f = split_file(Path(data), r.path()) or (split_file(Path(data), r.config) if r.split == "train" else None)
        if f is None:
            hint = f"; {r.gated}" if r.gated else ""
            raise ObliviateError(f"{where}: no file {Path(data) / r.path()}.json|.jsonl|.parquet{hint}")
        records, source = read_records(f), f"{where}: {f}"
    elif is_hub_id(data):
        records, source = _load_hub_role(bench, r, where, hub_id=str(data)), f"{data}:{r.address}"
    else:
        raise ObliviateError(f"{where}: {data}: no such directory (a local mirror of the hub repository)")
    renames = dict(r.rename)
    if renames:
        records = [{renames.get(k, k): v for k, v in rec.items()} if isinstance(rec, dict) else rec
                   for rec in records]
    records = check_records(records, FORMAT_SCHEMAS[r.format], source if "benchmark" in source else
                               f"{where}: {source}")
    return records[:max_items] if max_items else records


def _load_hub_role(bench: Benchmark, r: Role, where: str, hub_id: str | None = None) -> list[dict]:
    hub = r.hub_id or hub_id or bench.hub_id
    if hub is None:
        raise ObliviateError(f"{where}: the {bench.name} benchmark has no hub id; pass --data DIR")
    hint = r.gated or "offline? pass --data DIR, a local mirror of the hub repository"
    return load_hub(hub, r.config, r.split, where=f"{where}: ", hint=hint)


def training_records(bench: Benchmark | str, data, role: str, split: str | None = None) -> tuple[list[dict], str]:
    """(records, format) of an unlearning set `role` (`forget_train` / `retain_train`) and its split:

    None → the record's default (`train_splits`, else the role itself); a role name → that role; `config/split`
    → that address read like the role; a split name → `load_split` (flat `DIR/<split>.json`, hub config
    `<split>`, '+'-joined, or one local file).
    """
    bench = get_benchmark(bench) if isinstance(bench, str) else bench
    split = split if split is not None else bench.train_splits.get(role)
    if split is None or split in bench.roles:
        name = split or role
        return load_role(bench, data, name), _role_for(bench, name, None).format
    if "/" in split or split == WMDP_BIO_FORGET.address:
        return load_role(bench, data, role, split=split), _role_for(bench, role, split).format
    return load_split(data if data is not None else bench.hub_id, split), "qa"


def resolve_benchmark(name: str | None, data) -> tuple[Benchmark, str]:
    """(benchmark, one line for the output): the given `--benchmark`, else inferred from the data."""
    if name is not None:
        bench = get_benchmark(name)
        if data is None and bench.hub_id is None:
            raise ObliviateError(f"benchmark {name} has no hub id: pass --data DIR")
        return bench, f"benchmark: {bench.name}"
    if data is None:
        raise ObliviateError("pass --data (a directory, file or hub id) or --benchmark with a hub id")
    bench = get_benchmark(infer_benchmark(data))
    return bench, f"benchmark: {bench.name} (inferred from {data}; set --benchmark to choose)"
