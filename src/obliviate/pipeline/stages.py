"""The pipeline's stages: their keys, and the stages every chain shares (train a model, evaluate one).

Run-or-reuse is `obliviate.stagecache` (`Stages`: `<stage>/stage.json` = {key, seconds}, written last in an
atomic directory); this module decides what goes into each key. A key holds the world preset and seed, the
stage's parameters and `code_hash` of the sub-packages the stage runs, so a stage is redone exactly when one
of them changes. The key dicts are those of the former `obliviate/demo.py`: a run directory written before
the move is reused stage by stage wherever the hashed code (data, models, evaluate, unlearn, attack/*,
scenarios) is unchanged, and recomputed where it changed (the pipeline's own code is not hashed).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from obliviate.pipeline.config import DemoConfig
from obliviate.stagecache import Stages, code_hash


def stage_keys(cfg: DemoConfig) -> dict:
    """Stage keys: preset, seed, parameters and the hash of the code each stage runs."""
    from obliviate.evaluate import EvalConfig
    from obliviate.models.finetune import FinetuneConfig

    base = {"preset": cfg.preset, "world_seed": cfg.world_seed, "code": code_hash("data")}
    model = {**base, ("base_model" if cfg.base_model else "size"): cfg.base_model or cfg.model_size,
             "code": code_hash("data", "models"), **({"model_args": cfg.model_args} if cfg.model_args else {})}
    ft = FinetuneConfig(epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, batch_size=cfg.finetune_batch_size,
                        lora=cfg.finetune_lora, lora_r=cfg.finetune_lora_r, lora_alpha=2 * cfg.finetune_lora_r,
                        seed=cfg.world_seed)
    trained = {**model, "finetune": dataclasses.asdict(ft)}
    ecfg = EvalConfig(forget=cfg.forget, max_new_tokens=cfg.max_new_tokens)
    return {"base": base, "model": model, "trained": trained, "finetune": ft, "eval_config": ecfg,
            "eval": {**trained, "eval": dataclasses.asdict(ecfg), "code_eval": code_hash("evaluate", "models")},
            "unlearn_code": code_hash("unlearn")}


_EMBEDDERS: dict = {}


def eval_into(cfg: DemoConfig, ecfg, model_dir: Path, d: Path, retain_res=None, before_res=None,
              progress=False) -> dict:
    """Evaluate one model directory of the run into `d` (the embedding model is loaded once per process)."""
    from obliviate.evaluate import evaluate
    from obliviate.models.loading import load_model

    from obliviate.evaluate.embeddings import embedder_missing

    if ecfg.embedder and ecfg.embedder not in _EMBEDDERS and not embedder_missing(ecfg.embedder):
        from obliviate.evaluate.embeddings import load_embedder

        _EMBEDDERS[ecfg.embedder] = load_embedder(ecfg.embedder)
    model, tok = load_model(model_dir, model_args=cfg.model_args)
    return evaluate(model, tok, Path(cfg.out) / "world", ecfg, retain_results=retain_res, before_results=before_res,
                    out=d, model_name=str(model_dir.relative_to(cfg.out)), progress=progress,
                    embedder=_EMBEDDERS.get(ecfg.embedder))


def train_job(cfg: DemoConfig, name: str, split: str, progress: bool = False) -> dict:
    """Fine-tune the base model on `split` into models/<name> (target or retain); returns the stage timings."""
    from obliviate.data.loading import load_split
    from obliviate.models.finetune import finetune, save_finetuned
    from obliviate.models.loading import load_model

    out, keys = Path(cfg.out), stage_keys(cfg)
    st = Stages(out)

    def fn(d: Path):
        model, tok = load_model(cfg.base_dir(), model_args=cfg.model_args)
        ft = dataclasses.replace(keys["finetune"], split=split)
        log = finetune(model, tok, load_split(out / "world", split), ft, progress=progress)
        extra = {"finetuned_from": cfg.base_model} if cfg.base_model else {"size": cfg.model_size}
        save_finetuned(model, tok, d, ft, log, extra={**extra, "split": split})

    st.run(out / "models" / name, {**keys["trained"], "split": split}, fn)
    return st.timings


def eval_reference_models(cfg: DemoConfig, d: Path, progress: bool) -> None:
    """Evaluate the target and retain models into `d`/{target,retain}.

    The target's own generations are the "before" outputs (Cosine Similarity) for every other model; its second
    evaluation hits the evaluation cache and only adds Forget Quality and its own CS (= 1)."""
    ecfg, models = stage_keys(cfg)["eval_config"], Path(cfg.out) / "models"
    target_first = eval_into(cfg, ecfg, models / "target", d / "target", progress=progress)
    retain_res = eval_into(cfg, ecfg, models / "retain", d / "retain", None, target_first, progress)
    eval_into(cfg, ecfg, models / "target", d / "target", retain_res, target_first, progress)
