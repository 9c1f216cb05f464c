"""`EvalConfig`: what `obliviate eval` runs (YAML keys map 1:1 onto fields; CLI `key=value` overrides).

    # obliviate eval --model runs/target --data data/demo --out runs/target/eval max_new_tokens=48
    forget: forget10
    max_new_tokens: 48
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from obliviate import ObliviateError
from obliviate.config import MAX_BATCH, MAX_SEED, MAX_TOKENS, check_ranges
from obliviate.evaluate.harness import HARNESSES
from obliviate.parity import check_mode


@dataclass
class EvalConfig:
    forget: str = "forget10"  # forget split; its `_perturbed` twin is used when present (truth ratio)
    holdout: str | None = None  # MIA non-members; None: holdoutXX of the forget level
    retain: str | None = "retain_perturbed"  # None skips a role
    world_facts: str | None = "world_facts_perturbed"
    real_authors: str | None = "real_authors_perturbed"
    max_new_tokens: int = 200  # QA generation (SPEC: 200; the tiny demo model's answers are < 40 tokens)
    batch_size: int = 16  # forward passes
    gen_batch_size: int = 64  # decoding is weight-bandwidth-bound on CPU: 64 rows cost ~1.25× the step time of 16 (docs/speed.md)
    max_length: int = 512
    min_k: float = 0.4  # Min-K% / Min-K%++ fraction
    embedder: str | None = "all-MiniLM-L6-v2"  # sentence-transformers id/path; None: skip Cosine Similarity
    nli: str | None = None  # NLI model id/path; None: Entailment Score not computed (reason recorded)
    rouge_floor: float = 0.1  # seed A: ROUGE-L recall below this counts as not entailed
    privleak_reference_auc: float | None = None  # AUC_retrain when no retain results, MUSE's orientation (0.4772 News)
    max_items: int | None = None  # evaluate the first N items of each split (quick looks)
    verbmem: str | None = None  # MUSE VerbMem split (prompt, gt)
    knowmem: str | None = None  # MUSE KnowMem split (question, answer)
    knowmem_icl: str | None = None  # few-shot examples for KnowMem (question, answer)
    mcq: list[str] = field(default_factory=list)  # question/choices/answer splits (WMDP / MMLU)
    harness: str | None = None  # "lm-eval": also run lm-evaluation-harness's own tasks (evaluate/harness.py)
    tasks: list[str] = field(default_factory=list)  # lm-eval task / group names, e.g. [wmdp_bio, mmlu]
    harness_data: str = "data/hub"  # local hub-layout copies: <dir>/<dataset_path>/<dataset_name>/<split>.jsonl
    seed: int = 0
    parity: str = "paper"  # paper | open-unlearning | closer-look: which conventions (obliviate.parity.CONVENTIONS)

    # the declared range of every numeric field (config.check_ranges)
    RANGES: ClassVar[dict[str, str]] = {
        "max_new_tokens": f"[1, {MAX_TOKENS}]", "batch_size": f"[1, {MAX_BATCH}]",
        "gen_batch_size": f"[1, {MAX_BATCH}]", "max_length": f"[8, {MAX_TOKENS}]", "min_k": "(0, 1]",
        "rouge_floor": "[0, 1]", "privleak_reference_auc": "(0, 1]", "max_items": "[1, 1e9]", "seed": f"[0, {MAX_SEED}]",
    }

    def __post_init__(self):
        check_ranges(self)
        check_mode(self.parity)
        if isinstance(self.tasks, str):  # --tasks wmdp_bio,mmlu
            self.tasks = [t for t in self.tasks.split(",") if t]
        if self.harness is not None and self.harness not in HARNESSES:
            raise ObliviateError(f"harness: {self.harness!r} is not one of {', '.join(HARNESSES)}")
        if bool(self.harness) != bool(self.tasks):
            raise ObliviateError("harness and tasks go together: --harness lm-eval --tasks wmdp_bio,mmlu")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.forget or ""):
            raise ObliviateError(f"forget: {self.forget!r} is not a split name")

    @property
    def level(self) -> str | None:
        """The forget level ('10' for forget10), used to pick holdout10."""
        m = re.search(r"(\d+)$", self.forget.removesuffix("_perturbed"))
        return m.group(1) if m else None

    def holdout_split(self) -> str | None:
        if self.holdout is not None:
            return self.holdout
        return f"holdout{self.level}" if self.level else None
