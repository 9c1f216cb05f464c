"""The Python API: `from obliviate import load_model, load_benchmark, unlearn, evaluate, attack`.

    model, tok = load_model("models/target")
    data = load_benchmark("data/tiny")                                  # the synthetic world (inferred), forget10
    run = unlearn(model, tok, data, recipe="npo+gd", max_steps=4)       # UnlearnResult; run.model is trained
    ev = evaluate(run.model, tok, data, max_new_tokens=32)              # EvalResult; ev.metrics["forget_prob"]
    mia = attack("mia", run.model, tok, data)                           # AttackResult of ATTACKS["mia"]
    print(run.summary(), ev.summary(), mia.summary(), sep="\n\n")

Each verb wraps the library function of the same name (`models.loading.load_model`,
`data.benchmarks.resolve_benchmark` + `training_records`, `unlearn.loop.unlearn`, `evaluate.suite.evaluate`,
the `attack.registry.ATTACKS` record's `run`) and returns a typed result: a dataclass with `.to_dict()`
(JSON-ready: numbers as numbers, None where a value is not computed) and `.summary()` (a short Markdown table).
Keyword arguments beyond a verb's named ones are fields of its config dataclass (`UnlearnConfig`, `EvalConfig`,
the attack's config), checked like a YAML config: an unknown field or a value out of range is a one-line
`ObliviateError`. With `out=DIR` a verb writes its run directory as the CLI verb does (through `rundir.run_dir`:
run.json with the resolved config, seed and versions); without, `unlearn` and `evaluate` write nothing and
`attack` writes into a new temporary directory (`result.out`).

`obliviate.unlearn`, `obliviate.evaluate` and `obliviate.attack` are also subpackages: the package attribute is
the API function, which hands any other attribute to the subpackage (`obliviate/__init__.py`), so
`import obliviate.unlearn.loop` and `from obliviate.evaluate import METRICS` keep working (docs/api.md).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from obliviate import ObliviateError
from obliviate.config import from_dict, jsonable
from obliviate.data.benchmarks import BENCHMARKS, Benchmark, resolve_benchmark, training_records
from obliviate.html import table_md
from obliviate.rundir import run_dir


def _frame(out):
    """The CLI's run frame (claim + lock + written record) when the caller gave `out`; nothing otherwise."""
    return run_dir(out, what="out") if out is not None else contextlib.nullcontext()


@dataclass
class BenchmarkData:
    """A benchmark's data as the verbs read it: the `BENCHMARKS` record, where its files are, the forget / retain
    splits unlearning trains on (`forget`: their records, loaded and checked by `load_benchmark`)."""

    benchmark: Benchmark = field(repr=False)
    data: str | None  # a directory, a JSON/JSONL file or a hub id; None: the benchmark's hub ids
    forget_split: str | None
    retain_split: str | None
    forget: list[dict] = field(repr=False)

    @property
    def name(self) -> str:
        return self.benchmark.name

    @property
    def retain(self) -> list[dict]:
        """The retain set's records (read on demand: a benchmark without one says so in one line)."""
        return training_records(self.benchmark, self.data, "retain_train", self.retain_split)[0]

    def __repr__(self) -> str:
        return (f"BenchmarkData(name={self.name!r}, data={self.data!r}, forget_split={self.forget_split!r}, "
                f"retain_split={self.retain_split!r}, forget=<{len(self.forget)} records>)")


def load_benchmark(name_or_path: str | Path | None = None, *, benchmark: str | None = None,
                   forget: str | None = None, retain: str | None = None) -> BenchmarkData:
    """Resolve a benchmark's data and read its forget set: a directory (the synthetic world, a local mirror of a
    hub repository), a JSON/JSONL file, a hub id, or a `BENCHMARKS` name (its hub ids).

    `benchmark` names the record when the data does not say it (default: inferred, as `--benchmark`);
    `forget` / `retain`: the unlearning splits (default: the record's, e.g. forget10 / retain90).

    >>> data = load_benchmark("data/tiny")                      # doctest: +SKIP
    >>> data.name, data.forget_split, len(data.forget)          # doctest: +SKIP
    ('world', 'forget10', 8)
    """
    data = name_or_path
    if isinstance(data, str) and data in BENCHMARKS and not Path(data).exists() and benchmark is None:
        data, benchmark = None, data
    data = str(data) if data is not None else None
    bench, _ = resolve_benchmark(benchmark, data)
    forget = forget or bench.train_splits.get("forget_train")
    retain = retain or bench.train_splits.get("retain_train")
    records, _ = training_records(bench, data, "forget_train", forget)
    return BenchmarkData(bench, data, forget, retain, records)


def _as_data(data) -> BenchmarkData:
    return data if isinstance(data, BenchmarkData) else load_benchmark(data)


def load_model(model: str | Path, *, model_args: str | dict | None = None, allow_pickle: bool = False,
               trust_remote_code: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) from a model directory, a PEFT adapter directory (its base resolved and the adapter
    merged), the offline alias `smollm2-135m-instruct`, or a hub id; in eval mode on this process's device
    (CUDA when present). `model_args`: lm-eval's convention, e.g. "dtype=bfloat16,revision=main".

    >>> model, tok = load_model("models/target")              # doctest: +SKIP
    >>> model, tok = load_model("smollm2-135m-instruct", model_args="dtype=bfloat16")   # doctest: +SKIP
    """
    from obliviate.models.loading import load_model as load

    return load(model, model_args=model_args, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)


def _numbers(d: dict) -> dict[str, float | int | None]:
    return {k: v for k, v in jsonable(d).items() if v is None or (isinstance(v, (int, float)) and
                                                                   not isinstance(v, bool))}


@dataclass
class UnlearnResult:
    """What `unlearn` returns: the unlearned model (trained in place, LoRA merged), the resolved config, the
    per-step log and the run's summary (`summary.json`'s numbers: forget log-prob / Prob before and after, ...)."""

    model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    config: Any
    log: list[dict] = field(repr=False)
    stats: dict = field(repr=False)
    out: Path | None = None

    @property
    def metrics(self) -> dict[str, float | int | None]:
        """The summary's numbers, e.g. `metrics["forget_prob_after"]`, `metrics["steps"]`."""
        return _numbers(self.stats)

    def to_dict(self) -> dict:
        return jsonable({"recipe": self.config.recipe, "config": self.config, "summary": self.stats,
                         "log": list(self.log), "out": self.out})

    def summary(self) -> str:
        s = self.stats
        probes = sorted({k[:-7] for k in s if k.endswith("_before") and f"{k[:-7]}_after" in s})
        rows = [[p, s[f"{p}_before"], s[f"{p}_after"]] for p in probes]
        head = f"unlearned {s['recipe']}: {s['steps']} steps in {s['seconds']:.1f} s (lr {s['lr']:.2g})"
        return head + "\n" + table_md(["forget set", "before", "after"], rows)


def unlearn(model, tokenizer, data, *, out: str | Path | None = None, ref_model=None, reference_eval=None,
            resume: bool = False, overwrite: bool = False, progress: bool = True, **config) -> UnlearnResult:
    """Unlearn the forget set of `data` (`load_benchmark`'s, or anything it accepts) from `model`, in place.

    `config`: `UnlearnConfig` fields, e.g. `recipe="npo+gd+sam"`, `max_steps=4`, `lr=1e-3`, `eval_every="epoch"`,
    `stop="forget_prob <= 0.3"`; the retain set and refusals are read when the recipe needs them. `ref_model`: the
    reference model, a model, a (model, tokenizer) pair or a directory (continual unlearning:
    `reference="original"`, set when it is given); `reference_eval`: a retain model's eval.json
    or `EvalResult` for the rules' `retain:` values. `out`: the run directory (model, run.json, log.jsonl, ...).

    >>> run = unlearn(model, tok, load_benchmark("data/tiny"), recipe="npo+gd", max_steps=4)   # doctest: +SKIP
    >>> run.metrics["forget_prob_after"] < run.metrics["forget_prob_before"]                   # doctest: +SKIP
    True
    """
    from obliviate.commands.unlearn import unlearn_records
    from obliviate.evaluate.probes import probe_for
    from obliviate.unlearn.config import UnlearnConfig
    from obliviate.unlearn.loop import unlearn as unlearn_loop

    data = _as_data(data)
    if ref_model is not None:
        config.setdefault("reference", "original")
    cfg = from_dict(UnlearnConfig, config, source="unlearn()")
    flags = SimpleNamespace(data=data.data, forget=data.forget_split, retain=data.retain_split)
    forget_split, _, forget, retain, refusals = unlearn_records(flags, cfg, data.benchmark)
    probe, reference = probe_for(cfg, data.data, benchmark=data.benchmark, forget=forget_split,
                                 reference_eval=_raw(reference_eval), tokenizer=tokenizer)
    ref = ref_model[0] if isinstance(ref_model, tuple) else ref_model
    if isinstance(ref, (str, Path)):
        ref = load_model(ref)[0]
    with _frame(out):
        model, log = unlearn_loop(model, tokenizer, forget, retain, cfg, refusals=refusals, out_dir=out,
                                  resume=resume, overwrite=overwrite, ref_model=ref, progress=progress,
                                  probe=probe, reference=reference)
    return UnlearnResult(model, tokenizer, cfg, list(log), log.summary, Path(out) if out is not None else None)


def _raw(value):
    """An `EvalResult` / `AttackResult` as the dict the library functions take; a dict or path unchanged."""
    return value.results if isinstance(value, EvalResult) else value


def eval_metrics(results: dict) -> dict[str, float | int | None]:
    """eval.json's numbers flat: `<role>_<metric>` of every split's means (`nll_mean` → `<role>_nll`, as the
    in-training probe names them), then every corpus aggregate (a dict-valued one as `<name>_<key>`)."""
    out: dict[str, Any] = {}
    for kind in ("splits", "text"):
        for role, s in results.get(kind, {}).items():
            for key, v in s.get("means", {}).items():
                out[f"{role}_{'nll' if key == 'nll_mean' else key}"] = v
    for key, v in results.get("aggregates", {}).items():
        if isinstance(v, dict) and not key.endswith("_parts"):
            out.update({f"{key}_{k}": x for k, x in v.items()})
        elif not isinstance(v, dict):
            out[key] = v
    return _numbers(out)


@dataclass
class EvalResult:
    """What `evaluate` returns: eval.json's content (`results`, layout in `evaluate/suite.py`), its numbers flat
    (`metrics["forget_prob"]`, `metrics["model_utility"]`, ...) and what was not computed, with the reason."""

    results: dict = field(repr=False)
    out: Path | None = None

    @property
    def metrics(self) -> dict[str, float | int | None]:
        return eval_metrics(self.results)

    @property
    def not_computed(self) -> dict[str, str]:
        return dict(self.results.get("not_computed", {}))

    def to_dict(self) -> dict:
        return jsonable({"metrics": self.metrics, "not_computed": self.not_computed, "out": self.out,
                         "results": self.results})

    def summary(self) -> str:
        from obliviate.evaluate.summary import summary_rows

        return table_md(["evaluation", "value"], summary_rows(self.results))


def evaluate(model, tokenizer, data, *, out: str | Path | None = None, retain_results=None, before_results=None,
             overwrite: bool = False, progress: bool = True, **config) -> EvalResult:
    """Evaluate `model` on every role of `data` (`load_benchmark`'s, or anything it accepts): the full suite of
    `obliviate eval` (Prob, ROUGE, Truth Ratio, MIA AUC, Forget Quality with `retain_results`, Cosine Similarity
    with `before_results`, ...). `config`: `EvalConfig` fields, e.g. `max_new_tokens=32`, `max_items=20`; the
    forget split defaults to the data's. `retain_results` / `before_results`: an `EvalResult`, a results dict or
    an eval.json path. `out`: writes `<out>/eval.json` (and its stage cache) as `obliviate eval` does.

    >>> ev = evaluate(model, tok, load_benchmark("data/tiny"), max_new_tokens=32)   # doctest: +SKIP
    >>> ev.metrics["forget_prob"], ev.not_computed                                   # doctest: +SKIP
    """
    from obliviate.evaluate.config import EvalConfig
    from obliviate.evaluate.suite import evaluate as run_suite

    data = _as_data(data)
    if data.forget_split and "forget" in data.benchmark.split_roles:
        config.setdefault("forget", data.forget_split)
    cfg = from_dict(EvalConfig, config, source="evaluate()")
    with _frame(out):
        results = run_suite(model, tokenizer, data.data, cfg, benchmark=data.benchmark,
                            retain_results=_raw(retain_results), before_results=_raw(before_results), out=out,
                            overwrite=overwrite, progress=progress)
    return EvalResult(results, Path(out) if out is not None else None)


@dataclass
class AttackResult:
    """What `attack` returns: the attack's result (`result`, the `<out>/<attack>.json` it wrote), its table
    (`headers`, `rows`: the report card's) and the directory it wrote."""

    name: str
    result: dict = field(repr=False)
    config: Any
    out: Path

    @property
    def table(self) -> tuple[list[str], list[list]]:
        from obliviate.attack.registry import get_attack

        return get_attack(self.name).table({"model": [self.result]})

    def to_dict(self) -> dict:
        return jsonable({"attack": self.name, "config": self.config, "out": self.out, "result": self.result})

    def summary(self) -> str:
        from obliviate.attack.registry import get_attack

        a = get_attack(self.name)
        head = a.title + (f": {a.summary(self.result)}" if a.summary else "")
        return head + "\n" + table_md(*self.table)


def _pair(model, tokenizer):
    """A reference model as the attacks take it: a directory / hub id or a (model, tokenizer) pair; a bare model
    is paired with the attacked model's tokenizer."""
    if model is None or isinstance(model, (str, Path, tuple)):
        return model
    return model, tokenizer


def _attack_config(a, name: str, data: BenchmarkData, config: dict):
    fields = {f.name for f in dataclasses.fields(a.config)}
    if "benchmark" in fields:  # the attack says what it applies to
        config.setdefault("benchmark", data.name)
    elif "forget" not in data.benchmark.split_roles:
        raise ObliviateError(f"attack {name}: benchmark {data.name} has no forget split read by name (the attacks "
                             "score answers to forget questions); use world or tofu data")
    if "forget" in fields and data.forget_split:
        config.setdefault("forget", data.forget_split)
    return from_dict(a.config, config, source=f"attack {name}")


def attack(name: str, model, tokenizer, data, *, out: str | Path | None = None, original=None, retain_model=None,
           retain_results=None, start_results=None, allow_pickle: bool = False, progress: bool = True,
           **config) -> AttackResult:
    """Run the `ATTACKS[name]` attack (relearn, jailbreak, mia, quantize, reformat, incontext: `obliviate ls
    attacks`) on `model`, with `data`'s forget split. `config`: the attack's config fields (e.g. relearn `k=4,
    steps=[5, 10]`). `original` / `retain_model`: (model, tokenizer) pairs or directories, for the attacks that
    read them (`ATTACKS[name].references`); `retain_results` / `start_results`: `EvalResult`s or eval.json paths
    (`start_results`: the model's own evaluation, reused where the attack can). `out`: its directory (default: a
    new temporary one, `result.out`). An attack that trains (relearn) trains a copy: `model` is left unchanged.

    >>> r = attack("relearn", run.model, tok, load_benchmark("data/tiny"), k=4, steps=[5])   # doctest: +SKIP
    >>> print(r.summary())                                                                  # doctest: +SKIP
    """
    from obliviate.attack.registry import get_attack

    a = get_attack(name)
    data = _as_data(data)
    cfg = _attack_config(a, name, data, config)
    refs = {"original": _pair(original, tokenizer), "retain_model": _pair(retain_model, tokenizer),
            "retain_results": _raw(retain_results)}
    readable = set(a.references) | ({"retain_results"} if a.reuses_eval else set())
    unread = [k for k, v in refs.items() if v is not None and k not in readable]
    if unread:
        raise ObliviateError(f"attack {name}: does not read {unread[0]} (it reads: "
                             f"{', '.join(sorted(readable)) or 'no reference'})")
    if a.trains:  # the attack fine-tunes what it is given: the caller's model stays as it was
        model = copy.deepcopy(model)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"obliviate-{name}-"))
    with _frame(out):
        result = a.run((model, tokenizer), data.data or data.benchmark.hub_id, cfg, out,
                       start_results=_raw(start_results), allow_pickle=allow_pickle, progress=progress,
                       **{k: v for k, v in refs.items() if v is not None})
    return AttackResult(name, result, cfg, out)
