"""obliviate finetune --model models/base --data data/demo --split full+world_facts --out models/target [key=value ...]"""

from obliviate.commands.flags import checked
from obliviate.config import load_config
from obliviate.data.loading import load_split
from obliviate.models.finetune import FinetuneConfig, finetune, resolve_lr, save_finetuned
from obliviate.models.hub import add_model_arguments
from obliviate.models.loading import check_output_dir, load_model, model_size_name
from obliviate.rundir import run_dir


def add_arguments(p):
    p.add_argument("--model", required=True,
                   help="model directory, PEFT adapter directory, hub id, or smollm2-135m-instruct")
    p.add_argument("--data", required=True, help="world directory, local JSON/JSONL file, or hub id (locuslab/TOFU)")
    p.add_argument("--split", default=None, help="split(s) to train on, '+'-joined (default: full)")
    p.add_argument("--out", required=True)
    p.add_argument("--config", help="YAML file with FinetuneConfig fields")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickle checkpoints (trusted files only)")
    p.add_argument("--trust-remote-code", action="store_true")
    add_model_arguments(p)
    p.add_argument("overrides", nargs="*", help="FinetuneConfig overrides, e.g. epochs=20 lr=3e-3 lora=true lora_r=16 "
                   "group_by_length=false; log_with=tensorboard|wandb|trackio|mlflow tracker_dir=DIR (default: "
                   "OUT/trackers)")


def resolve_config(args) -> FinetuneConfig:
    """The FinetuneConfig of a `finetune` command line: defaults < --config YAML < key=value < flags."""
    return load_config(FinetuneConfig, args.config, args.overrides, **checked(args.overrides, split=args.split,
                                                                              seed=args.seed))


def run(args):
    cfg = resolve_config(args)
    with run_dir(args.out, args.model) as out:
        check_output_dir(out, args.model, overwrite=args.overwrite)
        records = load_split(args.data, cfg.split)
        model, tok = load_model(args.model, allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
                              model_args=args.model_args)
        size = model_size_name(model)
        cfg.lr = resolve_lr(cfg.lr, model)
        log = finetune(model, tok, records, cfg, out_dir=out)
        save_finetuned(model, tok, out, cfg, log,
                       extra={"size": size, "finetuned_from": str(args.model), "split": cfg.split})
    print(f"trained {len(log)} steps on {len(records)} items ({cfg.split}); final loss {log[-1]['loss']:.4f}; "
          f"saved to {out}")
    return {"out": str(out), "steps": len(log), "items": len(records), "split": cfg.split,
            "final_loss": log[-1]["loss"], "outputs": {"model": str(out), "run": str(out / "run.json")}}
