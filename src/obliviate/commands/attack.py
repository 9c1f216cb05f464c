"""obliviate attack relearn|jailbreak|mia --model DIR --data DIR --forget forget10 [...] [--out DIR]

    obliviate attack relearn --model M --data D --k 8 --steps 10,20,40
    obliviate attack jailbreak --model M --data D [--original TARGET --match-layer 2] [--position prefix|suffix]
        [--tokens 20] [--steps 250] [--search-width 128] [--topk 64] [--time-limit S] --out RUN
    obliviate attack mia --model M --data D [--retain-model R]

Each writes `<out>/<attack>.json` (+ run.json; jailbreak and mia also a PNG); the report card's "Attacks"
section shows every attack whose results exist in a demo run's seed directories (`report.attacks.ATTACKS`).
"""

from pathlib import Path

from obliviate.config import load_config, write_run_info
from obliviate.rundir import run_dir


def _common(p, default_out: str):
    p.add_argument("--model", required=True, help="the (unlearned) model directory")
    p.add_argument("--data", required=True)
    p.add_argument("--benchmark", default=None, help="world or tofu (default: inferred from --data, and said); "
                   "the attacks need QA records in TOFU's schema, so other benchmarks are refused")
    p.add_argument("--forget", default=None, help="forget split (default forget10)")
    p.add_argument("--out", default=None, help=f"default: <model>/{default_out}")
    p.add_argument("--config", help="YAML with the attack's config fields")
    p.add_argument("--allow-pickle", action="store_true")


def add_arguments(p):
    sub = p.add_subparsers(dest="attack", metavar="ATTACK", required=True)
    r = sub.add_parser("relearn", help="fine-tune on k forget items for N steps; re-evaluate forget metrics")
    _common(r, "relearn")
    r.add_argument("--k", type=int, default=None, help="forget items the attacker trains on (default 8)")
    r.add_argument("--steps", default=None, help="comma-separated step counts to evaluate at (default 10,20,40)")
    r.add_argument("--lr", type=float, default=None, help="default: the unlearning lr preset of the model size")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--retain-results", help="the retain model's eval.json (adds Forget Quality to the curve)")
    r.add_argument("overrides", nargs="*", help="RelearnConfig overrides, e.g. batch_size=2")

    j = sub.add_parser("jailbreak", help="GCG: one adversarial string that brings forgotten answers back")
    _common(j, "jailbreak")
    j.add_argument("--position", choices=["prefix", "suffix"], default=None, help="default prefix")
    j.add_argument("--tokens", type=int, default=None, help="string length in tokens (default 20)")
    j.add_argument("--k", type=int, default=None, help="forget items the search optimises over (default 8)")
    j.add_argument("--steps", type=int, default=None, help="search steps (default 250)")
    j.add_argument("--search-width", type=int, default=None, help="candidate swaps scored per step (default 128)")
    j.add_argument("--topk", type=int, default=None, help="tokens per position from the gradient (default 64)")
    j.add_argument("--time-limit", type=float, default=None, help="stop the search after S seconds")
    j.add_argument("--original", help="the model before unlearning (enhanced GCG: match its hidden states)")
    j.add_argument("--match-layer", type=int, default=None,
                   help="layer whose hidden states are matched to --original's (default with --original: the middle)")
    j.add_argument("--seed", type=int, default=None)
    j.add_argument("overrides", nargs="*", help="JailbreakConfig overrides, e.g. batch_size=16 match_weight=0.5")

    m = sub.add_parser("mia", help="membership inference: LOSS, zlib, Min-K%%, Min-K%%++ AUCs, forget vs holdout")
    _common(m, "mia")
    m.add_argument("--holdout", default=None, help="non-member split (default holdoutXX of the forget level)")
    m.add_argument("--retain-model", help="the retain model: its AUCs side by side (what unlearning should reach)")
    m.add_argument("overrides", nargs="*", help="MIAConfig overrides, e.g. batch_size=8")


def run(args):
    _qa_benchmark(args)
    return {"relearn": _relearn, "jailbreak": _jailbreak, "mia": _mia}[args.attack](args)


def _qa_benchmark(args) -> None:
    """Say which benchmark the attack runs on; refuse one whose forget set is not QA in TOFU's schema."""
    from obliviate import ObliviateError
    from obliviate.data.benchmarks import resolve_benchmark

    bench, said = resolve_benchmark(args.benchmark, args.data)
    if not bench.tofu_schema:
        raise ObliviateError(f"attack {args.attack}: benchmark {bench.name} has no QA forget split in TOFU's schema "
                             "(the attacks score answers to forget questions); use world or tofu data")
    print(said)


def _relearn(args):
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


def _jailbreak(args):
    from obliviate import ObliviateError
    from obliviate.attack.jailbreak import JailbreakConfig, jailbreak
    from obliviate.models.loading import load_model
    from obliviate.report.attacks import ATTACKS
    from obliviate.html import figure_png, table_md

    model, tok = load_model(args.model, allow_pickle=args.allow_pickle)
    original = None
    layer = args.match_layer
    if args.original:
        original, orig_tok = load_model(args.original, allow_pickle=args.allow_pickle)
        if orig_tok.get_vocab() != tok.get_vocab():
            raise ObliviateError(f"--original {args.original}: its tokenizer differs from {args.model}'s")
        layer = layer if layer is not None else max(1, model.config.num_hidden_layers // 2)
    cfg = load_config(JailbreakConfig, args.config, args.overrides, forget=args.forget, position=args.position,
                      tokens=args.tokens, k=args.k, steps=args.steps, search_width=args.search_width, topk=args.topk,
                      time_limit=args.time_limit, match_layer=layer, seed=args.seed)
    with run_dir(Path(args.out or Path(args.model) / "jailbreak"), args.model) as out:
        result = jailbreak(model, tok, args.data, cfg, original=original, out=out)
        write_run_info(out, cfg, seed=cfg.seed)
    s = result["search"]
    enhanced = f" (enhanced: layer {cfg.match_layer} matched to {args.original})" if original is not None else ""
    print(f"jailbreak on {args.model}{enhanced}: {s['steps_run']} steps in {s['seconds']:.1f} s "
          f"({s['seconds_per_step']:.2f} s/step, stopped by {s['stopped']}); "
          f"loss {s['curve'][0]['loss']:.3f} -> best {s['curve'][-1]['best_loss']:.3f}")
    print(f"string ({cfg.position}, {len(result['string']['token_ids'])} tokens): {result['string']['text']!r}")
    print(f"token ids: {result['string']['token_ids']}")
    groups = {str(args.model): [result]}
    print(table_md(*ATTACKS["jailbreak"].table(groups)))
    (out / "jailbreak.png").write_bytes(figure_png(ATTACKS["jailbreak"].plot(groups)))
    print(f"wrote {out / 'jailbreak.json'}, {out / 'jailbreak.png'}")


def _mia(args):
    from obliviate.attack.mia import MIAConfig, membership_inference
    from obliviate.models.loading import load_model
    from obliviate.report.attacks import ATTACKS
    from obliviate.html import figure_png, table_md

    cfg = load_config(MIAConfig, args.config, args.overrides, forget=args.forget, holdout=args.holdout)
    model, tok = load_model(args.model, allow_pickle=args.allow_pickle)
    retain = load_model(args.retain_model, allow_pickle=args.allow_pickle) if args.retain_model else None
    with run_dir(Path(args.out or Path(args.model) / "mia"), args.model) as out:
        result = membership_inference(model, tok, args.data, cfg, retain=retain, out=out)
        write_run_info(out, cfg)
    print(f"membership inference on {args.model}: {result['n'][0]} members ({result['members']}) vs "
          f"{result['n'][1]} non-members ({result['nonmembers']}); AUC 0.5 = cannot tell them apart")
    groups = {str(args.model): [result]}
    print(table_md(*ATTACKS["mia"].table(groups)))
    (out / "mia.png").write_bytes(figure_png(ATTACKS["mia"].plot(groups)))
    print(f"wrote {out / 'mia.json'}, {out / 'mia.png'}")
