"""The quantization attack: does weight quantization bring forgotten answers back?

    result = quantize_attack({"model": (m, tok), "target": (t, tok), "retain": (r, tok)}, "data/demo",
                             QuantizeConfig(bits=[8, 4], group_size=128))
    result["rows"][0] == {"model": "model", "bits": 4, "forget_prob": ..., "recovery_prob": ..., ...}

Zhang et al., "Catastrophic Failure of LLM Unlearning via Quantization" (ICLR 2025, arXiv:2410.16454): GA/NPO
move each weight by less than a quantization step, so rounding the unlearned weights lands most of them where
the target's would land, and 4-bit restores much of the forgotten knowledge (8-bit, with 16× finer steps, far
less).

Weight-only, per-group round-to-nearest with torchao (`quantize_` + `IntxWeightOnlyConfig`, PerGroup
granularity; every `nn.Linear` but the output head, as GPTQ/AWQ practice leaves it): ``rtn`` is affine
(asymmetric: scale = (max−min)/(2^b−1) per group, integer zero point), ``hqq`` torchao's HQQ scale search
(`IntxChooseQParamsAlgorithm.HQQ_SCALE_ONLY`), ``tinygemm`` torchao's int4 GPU kernel layout
(`Int4WeightOnlyConfig`: 4-bit, CUDA only). Each quantized weight is then dequantized back into the layer:
weight-only quantization computes with exactly these values, and the evaluation suite runs unchanged. A group
is `group_size` input columns; a layer whose input width it does not divide uses the largest divisor below it
(SmolLM2's 576: 96), recorded in the result.

Every model is evaluated at full precision and at each bit width with the evaluation suite on the same forget
and retain splits: the unlearned model, the target quantized the same way (control: what quantization alone
does to a model that knows the answers) and the retain model (never knew them). Recovery ratio = the forget
metric after quantization ÷ the target's at full precision. QA benchmarks (TOFU, the world) give forget Prob,
ROUGE, truth ratio and retain Prob; MCQ benchmarks (WMDP) give the accuracy of each MCQ split.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from obliviate import ObliviateError
from obliviate.config import MAX_SEED, MAX_TOKENS, check_ranges, versions
from obliviate.evaluate import EvalConfig, evaluate
from obliviate.evaluate.metrics import recovery_ratio
from obliviate.rundir import write_json

METHODS = ("rtn", "hqq", "tinygemm")
QA_BENCHMARKS = ("world", "tofu")  # forget/retain QA splits (SPEC §2)
RECOVERY_KEYS = {"prob": "forget_prob", "rouge": "forget_rouge"}
MISSING_EXTRA = "the quantization attack needs torchao: pip install 'obliviate[quantize]'"


@dataclass
class QuantizeConfig:
    forget: str = "forget10"
    bits: list[int] = field(default_factory=lambda: [8, 4])  # weight bit widths (2..8)
    method: str = "rtn"  # rtn | hqq | tinygemm (4-bit, CUDA only)
    group_size: int = 128  # input columns sharing one scale / zero point
    benchmark: str | None = None  # None: inferred from the data (tofu / the world: QA; wmdp: MCQ)
    max_new_tokens: int = 48  # generation length for forget ROUGE
    seed: int = 0
    eval_cache: str | None = None  # a directory caching the control models' evaluations by weight fingerprint
    # (a pipeline: <run>/attack_cache, so every recipe's attack reuses the quantized target's and retain's)

    RANGES: ClassVar[dict[str, str]] = {  # config.check_ranges
        "bits": "[2, 8]", "group_size": "[1, 1000000]", "max_new_tokens": f"[1, {MAX_TOKENS}]", "seed": f"[0, {MAX_SEED}]",
    }

    def __post_init__(self):
        check_ranges(self)
        if self.method not in METHODS:
            raise ObliviateError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not self.bits or any(not 2 <= int(b) <= 8 for b in self.bits):
            raise ObliviateError(f"bits must be widths between 2 and 8, got {self.bits}")
        self.bits = sorted({int(b) for b in self.bits}, reverse=True)
        if self.method == "tinygemm" and self.bits != [4]:
            raise ObliviateError(f"method tinygemm is 4-bit only, got bits {self.bits}")


def torchao():
    """The torchao module (its import warnings about CUDA-only kernels silenced), or a one-line error."""
    logging.getLogger("torchao").setLevel(logging.ERROR)
    try:
        import torchao.quantization  # noqa: F401
    except ImportError:
        raise ObliviateError(MISSING_EXTRA) from None
    import torchao as mod

    return mod


def layer_group_size(in_features: int, group_size: int) -> int:
    """`group_size` if it divides the layer's input width, else its largest divisor below `group_size`."""
    return next(g for g in range(min(group_size, in_features), 0, -1) if in_features % g == 0)


def _ao_config(bits: int, method: str, group: int):
    torchao()
    from torchao.quantization import Int4WeightOnlyConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_primitives import MappingType
    from torchao.quantization.quantize_.workflows.intx.intx_choose_qparams_algorithm import (
        IntxChooseQParamsAlgorithm)

    if method == "tinygemm":
        return Int4WeightOnlyConfig(group_size=group)
    algo = IntxChooseQParamsAlgorithm.HQQ_SCALE_ONLY if method == "hqq" else IntxChooseQParamsAlgorithm.AFFINE
    return IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{bits}"), granularity=PerGroup(group),
                                mapping_type=MappingType.ASYMMETRIC if method == "rtn" else MappingType.SYMMETRIC,
                                intx_choose_qparams_algorithm=algo)


def quantize_linear(layer: torch.nn.Linear, bits: int, method: str = "rtn", group_size: int = 128):
    """Quantize one layer's weight with torchao in place; return the library's quantized tensor (scale,
    zero_point, qdata) after writing its dequantized values back as the layer's plain weight."""
    from torchao.quantization import quantize_

    dtype = layer.weight.dtype
    holder = torch.nn.Sequential(copy.deepcopy(layer))
    quantize_(holder, _ao_config(bits, method, layer_group_size(layer.in_features, group_size)))
    q = holder[0].weight
    with torch.no_grad():
        layer.weight.copy_(q.dequantize().to(dtype))
    return q


def quantize_model(model, bits: int, method: str = "rtn", group_size: int = 128) -> dict:
    """Quantize every `nn.Linear` but the output head of `model` in place; {layers, group_sizes} quantized."""
    torchao()
    if method == "tinygemm" and not torch.cuda.is_available():
        raise ObliviateError("quantize method tinygemm runs on a CUDA GPU only (torchao int4 kernels); use rtn or hqq "
                             "on CPU")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head]
    groups = {}
    for name, layer in layers:
        quantize_linear(layer, bits, method, group_size)
        groups[name] = layer_group_size(layer.in_features, group_size)
    return {"layers": len(layers), "group_sizes": sorted(set(groups.values()), reverse=True)}


def headline(results: dict) -> dict:
    """The attack's numbers from one evaluation: QA forget/retain means, or MCQ accuracy per split."""
    splits = results.get("splits", {})
    if "forget" in splits:
        f, r = splits["forget"]["means"], (splits.get("retain") or {}).get("means", {})
        return {"forget_prob": f.get("prob"), "forget_rouge": f.get("rouge_l_recall"),
                "forget_truth_ratio": f.get("truth_ratio"), "retain_prob": r.get("prob")}
    return {f"mcq_{role}": v for role, v in (results.get("aggregates", {}).get("mcq") or {}).items()}


def eval_config(cfg, bench_name: str) -> EvalConfig:
    """The evaluation each row runs: forget + retain (+ holdout) of a QA benchmark, every role of another (WMDP:
    its MCQ splits, scored by `evaluate.mcq`)."""
    if bench_name in QA_BENCHMARKS:
        return EvalConfig(forget=cfg.forget, world_facts=None, real_authors=None, embedder=None,
                          max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    return EvalConfig(retain=None, world_facts=None, real_authors=None, embedder=None,
                      max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)  # the benchmark's own MCQ roles


def check_benchmark(data, name: str | None, attack: str, allowed: tuple[str, ...]) -> str:
    """The benchmark `data` holds (`name` or inferred); a one-line refusal when the attack does not apply to it."""
    from obliviate.data.benchmarks import infer_benchmark

    bench = name or infer_benchmark(data)
    if bench not in allowed:
        raise ObliviateError(f"attack {attack} does not apply to benchmark {bench}: it needs "
                             f"{' or '.join(allowed)} data (QA items with forget/retain splits"
                             f"{', or MCQ splits' if 'wmdp' in allowed else ''})")
    return bench


def quantize_attack(models: dict[str, tuple], data, cfg: QuantizeConfig, *, start_results: dict | None = None,
                    out: str | Path | None = None, progress: bool = True) -> dict:
    """Evaluate each of `models` ({"model", "target", "retain"}: (model, tokenizer)) at full precision and at
    each of `cfg.bits`; return (and write to `<out>/quantize.json`) the rows and recovery ratios.

    start_results: the attacked model's own eval results on the same forget split, reused as its full-precision
    row. The models are copied before quantization (the given ones are left unchanged).
    """
    from obliviate.rundir import progress_bar

    bench = check_benchmark(data, cfg.benchmark, "quantize", QA_BENCHMARKS + ("wmdp",))
    ecfg = eval_config(cfg, bench)
    torchao()
    rows, info = [], {}
    bar = progress_bar(total=len(models) * (1 + len(cfg.bits)), desc="quantize", progress=progress)
    for name, (model, tok) in models.items():
        for bits in [None] + cfg.bits:
            reuse = (name == "model" and bits is None and start_results is not None and bench in QA_BENCHMARKS
                     and start_results["splits"].get("forget", {}).get("source", "").startswith(cfg.forget))
            if reuse:
                res = start_results
            else:
                m = model if bits is None else copy.deepcopy(model)
                if bits is not None:
                    info[bits] = quantize_model(m, bits, cfg.method, cfg.group_size)
                res = evaluate(m, tok, data, ecfg, benchmark=bench, progress=False,
                               cache_dir=cfg.eval_cache if name != "model" else None)
                del m
            rows.append({"model": name, "bits": bits, **headline(res)})
            bar.update(1)
    bar.close()
    add_recovery(rows)
    result = {"config": dataclasses.asdict(cfg), "benchmark": bench, "library": f"torchao {torchao().__version__}",
              "quantized": {str(b): v for b, v in info.items()}, "rows": rows,
              "not_computed": {} if "target" in models else {"recovery": "no target model given (--original-model)"},
              "versions": versions()}
    if out is not None:
        write_json(Path(out) / "quantize.json", result, indent=1)
    return result


def add_recovery(rows: list[dict]) -> None:
    """recovery_<m> = the row's forget metric (QA: Prob, ROUGE; MCQ: each split's accuracy) ÷ the target's at full
    precision (in place; None without a target row)."""
    base = next((r for r in rows if r["model"] == "target" and r["bits"] is None), {})
    keys = RECOVERY_KEYS if rows and "forget_prob" in rows[0] else {k: k for k in rows[0] if k.startswith("mcq_")}
    for r in rows:
        for short, key in keys.items():
            r[f"recovery_{short}"] = recovery_ratio(r.get(key), base.get(key))
