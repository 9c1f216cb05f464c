"""The pipeline: world → base/target/retain models → unlearning × recipes × seeds → evaluation → attacks →
(continual unlearning) → report card. `obliviate demo` runs it offline on a 2-core CPU; `obliviate reproduce`
runs it on a pretrained model.

    obliviate demo --preset demo --seeds 3 --out runs/demo
    from obliviate.pipeline import DemoConfig, run_demo

Modules: `config` (DemoConfig, the overrides language, the command presets in `presets/*.yaml`), `stages`
(stage keys, the shared train / evaluate stages), `chains` (one worker job per recipe × seed, and per continual
run), `pool` (spawned workers, longest job first), `run` (`run_demo`).

Every stage writes into its own directory under `out/` and is marked finished by a `stage.json` holding its key
(the world preset, seed, stage parameters and a hash of the code it runs) and its wall time
(`obliviate.stagecache`, the one run-or-reuse mechanism). A stage whose key matches is reused, so a second run,
or a run after Ctrl-C, redoes only what is missing or what changed. The world and the target/retain models are
built once (world seed `world_seed`); the seeds vary unlearning (forget/retain pairing) and the relearning attack
(which forget items the attacker gets).

Layout::

    out/world/                      the synthetic world (TOFU-schema JSON)
    out/models/{base,target,retain}/  HF model directories (+ stage.json)
    out/eval/{target,retain}/eval.json  the reference models (target = the 'before' outputs)
    out/runs/<recipe>/seed<k>/      unlearned model, log.jsonl, eval/eval.json, and per attack in `attacks`
                                    relearn/relearn.json, mia/mia.json, jailbreak/jailbreak.json
    out/continual/<spec>/seed<k>/   continual unlearning runs (`continual`), out/continual/cache their shared cache
    out/demo.json                   resolved config, versions, stage timings
    out/report.html, out/report.md  the report card (`obliviate report out` rebuilds them)
"""

from obliviate.pipeline.config import DEMO_RECIPES, DemoConfig, command_preset, resolve
from obliviate.pipeline.run import run_demo

__all__ = ["DEMO_RECIPES", "DemoConfig", "command_preset", "resolve", "run_demo"]
