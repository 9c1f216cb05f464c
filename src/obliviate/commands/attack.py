"""obliviate attack relearn --model DIR --data DIR --forget forget10 --k 8 --steps 10,20,40 [--out DIR]"""

from pathlib import Path

from obliviate.config import load_config, write_run_info
from obliviate.rundir import run_dir


def add_arguments(p):
    sub = p.add_subparsers(dest="attack", metavar="ATTACK", required=True)
    r = sub.add_parser("relearn", help="fine-tune on k forget items for N steps; re-evaluate forget metrics")
    r.add_argument("--model", required=True, help="the unlearned model directory")
    r.add_argument("--data", required=True)
    r.add_argument("--benchmark", default=None, help="world or tofu (default: inferred from --data, and said); "
                   "raw-text benchmarks are refused")
    r.add_argument("--forget", default=None, help="forget split (default forget10)")
    r.add_argument("--k", type=int, default=None, help="forget items the attacker trains on (default 8)")
    r.add_argument("--steps", default=None, help="comma-separated step counts to evaluate at (default 10,20,40)")
    r.add_argument("--lr", type=float, default=None, help="default: the unlearning lr preset of the model size")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--retain-results", help="the retain model's eval.json (adds Forget Quality to the curve)")
    r.add_argument("--out", default=None, help="default: <model>/relearn")
    r.add_argument("--config", help="YAML with RelearnConfig fields")
    r.add_argument("--allow-pickle", action="store_true")
    r.add_argument("overrides", nargs="*", help="RelearnConfig overrides, e.g. batch_size=2")


def run(args):
    from obliviate.attack.relearn import RelearnConfig, relearn
    from obliviate.models.loading import load_model

    cfg = load_config(RelearnConfig, args.config, args.overrides, forget=args.forget, k=args.k, steps=args.steps,
                      lr=args.lr, seed=args.seed)
    with run_dir(Path(args.out or Path(args.model) / "relearn"), args.model) as out:
        model, tok = load_model(args.model, allow_pickle=args.allow_pickle)
        result = relearn(model, tok, args.data, cfg, retain_results=args.retain_results, out=out)
        write_run_info(out, cfg, seed=cfg.seed)
    print(f"relearning attack on {args.model}: {cfg.k} of {result['n_forget']} forget items, lr {result['lr']:.2g}")
    print(f"{'step':>5} {'loss':>7} {'prob':>7} {'rougeL':>7} {'TR':>7} {'prob(unseen)':>13} {'FQ':>9}")
    for r in result["curve"]:
        fq = r["forget_quality"]
        print(f"{r['step']:>5} {r['train_loss'] if r['train_loss'] is not None else float('nan'):>7.3f} "
              f"{r['prob']:>7.3f} {r['rouge_l_recall']:>7.3f} {r['truth_ratio']:>7.3f} "
              f"{r['prob_unseen'] if r['prob_unseen'] is not None else float('nan'):>13.3f} "
              f"{fq if fq is not None else float('nan'):>9.2e}")
    print(f"wrote {out / 'relearn.json'}")
