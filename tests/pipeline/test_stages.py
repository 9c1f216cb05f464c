"""Stage keys keep the fields (and their order) of the run directories written before the pipeline moved to
obliviate/pipeline/, so such a directory is reused wherever the hashed code is unchanged."""

import dataclasses

from obliviate.pipeline import DemoConfig
from obliviate.pipeline.stages import stage_keys
from obliviate.stagecache import code_hash


def test_stage_keys_have_the_fields_of_the_old_stage_files(tmp_path):
    keys = stage_keys(DemoConfig(preset="tiny", seeds=1, out=str(tmp_path)))
    # the field lists of a demo run's stage.json files written by obliviate/demo.py (world, models/base, eval)
    assert list(keys["base"]) == ["preset", "world_seed", "code"]
    assert list(keys["model"]) == ["preset", "world_seed", "code", "size"]
    assert list(keys["eval"]) == ["preset", "world_seed", "code", "size", "finetune", "eval", "code_eval"]
    assert keys["base"] == {"preset": "tiny", "world_seed": 0, "code": code_hash("data")}
    assert keys["model"]["code"] == code_hash("data", "models") and keys["model"]["size"] == "tiny"
    assert keys["eval"]["code_eval"] == code_hash("evaluate", "models")
    assert keys["trained"]["finetune"] == dataclasses.asdict(keys["finetune"])
    assert (keys["finetune"].epochs, keys["finetune"].lr, keys["finetune"].lora_alpha) == (20.0, 3e-3, 32)
    pretrained = stage_keys(DemoConfig(out=str(tmp_path), base_model="some/model"))
    assert list(pretrained["model"]) == ["preset", "world_seed", "code", "base_model"]
