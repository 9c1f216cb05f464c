"""obliviate init-model --size tiny --data data/demo --out models/base"""

from obliviate.models.init import SIZES, init_model
from obliviate.rundir import run_dir


def add_arguments(p):
    p.add_argument("--size", choices=list(SIZES), default="tiny", help="micro (unit tests), tiny (demo), small")
    p.add_argument("--data", required=True, help="world directory whose text trains the tokenizer")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)


def run(args):
    with run_dir(args.out, args.data):
        model, tok = init_model(args.size, args.data, args.out, seed=args.seed)
    n = sum(p.numel() for p in model.parameters())
    summary = {"out": str(args.out), "size": args.size, "parameters": n, "vocab": len(tok),
               "outputs": {"model": str(args.out)}}
    print(f"wrote {args.size} Llama base model ({n:,} parameters, vocab {len(tok)}) to {args.out}")
    return summary
