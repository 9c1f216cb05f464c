"""Issue 26 §3: no hard-coded device. Models land on accelerate's device (CUDA when present), inputs follow the
model's device, bf16 autocast is on by default on CUDA and off on CPU. The CUDA branches run here on CPU by
monkeypatching the device checks and the device a model reports ("meta": any device that is not the CPU)."""

import re
from pathlib import Path

import pytest
import torch


@pytest.fixture
def devmod():
    """The device module as imported now (another test may have re-imported the package's modules)."""
    import importlib

    return importlib.import_module("obliviate.models.device")

SRC = Path(__file__).resolve().parents[2] / "src" / "obliviate"
HARD_CODED = re.compile(r"""device\s*=\s*["'](cpu|cuda)|torch\.device\(\s*["'](cpu|cuda)|\.to\(\s*["'](cpu|cuda)"""
                        r"""|\.cuda\(\)|Accelerator\(\s*cpu\s*=\s*True""")


def test_no_tensor_or_model_is_put_on_a_hard_coded_device():
    """A grep of the package: the device comes from `models.device` / accelerate / the model, never a literal.
    (Reading a checkpoint with `map_location="cpu"` before the model moves is not a placement.)"""
    hits = [f"{f.relative_to(SRC)}:{n}: {line.strip()}" for f in SRC.rglob("*.py")
            for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if HARD_CODED.search(line)]
    assert not hits, hits


def test_autocast_and_mixed_precision_follow_the_device(monkeypatch, devmod):
    assert devmod.autocast_kwargs("cpu") == dict(device_type="cpu", dtype=torch.bfloat16, enabled=False)
    assert devmod.autocast_kwargs("cpu", True)["enabled"]  # asked for explicitly
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devmod.autocast_kwargs("cuda:1") == dict(device_type="cuda", dtype=torch.bfloat16, enabled=True)
    assert not devmod.autocast_kwargs("cuda", False)["enabled"]  # mixed_precision=no
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert devmod.default_mixed_precision() == "no"  # no CUDA here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devmod.default_mixed_precision() == "bf16"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert devmod.default_mixed_precision() is None  # the launcher decided


def test_tf32_is_allowed_when_cuda_is_present(monkeypatch, devmod):
    was = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        devmod.allow_tf32()
        assert torch.get_float32_matmul_precision() == "highest"  # CPU: untouched
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        devmod.allow_tf32()
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(was)


def test_load_model_places_the_model_on_the_process_device(base_dir, monkeypatch, devmod):
    from obliviate.models.loading import load_model

    monkeypatch.setattr(devmod, "default_device", lambda: torch.device("meta"))
    model, _ = load_model(base_dir)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    kept = load_model(base_dir, model_args="device_map=cpu", with_tokenizer=False)  # device_map decides
    assert {p.device.type for p in kept.parameters()} == {"cpu"}


class _Seen(Exception):
    pass


@pytest.fixture
def spy(base_dir, monkeypatch):
    """The micro model reporting its input embedding on device "meta" (how `model_device` finds a model's
    device); its forward / generate record the inputs' device, then stop."""
    from types import SimpleNamespace

    from obliviate.models.loading import load_model

    model, tok = load_model(base_dir)
    seen = []
    monkeypatch.setattr(model, "get_input_embeddings", lambda: SimpleNamespace(weight=torch.empty(0, device="meta")))

    def record(*args, **kw):
        seen.extend(v.device.type for v in (*args, *kw.values()) if isinstance(v, torch.Tensor))
        raise _Seen

    monkeypatch.setattr(model, "forward", record)
    monkeypatch.setattr(model, "generate", record)
    return model, tok, seen


def test_evaluation_and_attack_inputs_follow_the_model_device(spy):
    from obliviate.attack.jailbreak import _Target, _run
    from obliviate.evaluate.generate import generate
    from obliviate.evaluate.mcq import mcq_eval
    from obliviate.evaluate.passes import forward_scores, score_shared_prompts
    from obliviate.models.logps import sequence_logps

    model, tok, seen = spy
    calls = [
        lambda: forward_scores(model, tok, [("q a b", "c")], share_prompts=False),
        lambda: score_shared_prompts(model, [[1, 2]], [[[3]]], 0),
        lambda: generate(model, tok, [[1, 2, 3]], max_new_tokens=2),
        lambda: mcq_eval(model, tok, [{"question": "q", "choices": ["a", "b"], "answer": 0}]),
        lambda: sequence_logps(model, {"input_ids": torch.ones(1, 3, dtype=torch.long),
                                       "attention_mask": torch.ones(1, 3, dtype=torch.long),
                                       "labels": torch.ones(1, 3, dtype=torch.long)}),
        lambda: _run(model, _Target("q", [], [5], [6]), adv_ids=torch.tensor([[7, 8]])),
    ]
    for call in calls:
        seen.clear()
        with pytest.raises(_Seen):
            call()
        assert seen and set(seen) == {"meta"}, (call, seen)


def test_embedder_goes_to_the_process_device(monkeypatch, devmod):
    import sentence_transformers

    from obliviate.evaluate import embeddings

    asked = {}

    class Fake:
        def __init__(self, path, device=None):
            asked["device"] = device

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Fake)
    monkeypatch.setattr(devmod, "default_device", lambda: torch.device("cuda", 0))
    embeddings.load_embedder("some/path")
    assert asked["device"] == "cuda:0"


def test_a_launch_accelerate_did_not_honour_is_one_line(monkeypatch, devmod):
    """accelerate 1.16 sets up FSDP only over GPUs: the FSDP config on CPU processes became DDP (MULTI_CPU)
    silently, and a multi-process launch without use_cpu on a CPU host became N independent runs."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from obliviate import ObliviateError

    fake = lambda n, kind: SimpleNamespace(num_processes=n, distributed_type=kind)  # noqa: E731
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ObliviateError, match="the FSDP accelerate config was launched, but accelerate set up "
                                             "MULTI_CPU"):
        devmod.check_launch(fake(2, DistributedType.MULTI_CPU))
    devmod.check_launch(fake(2, DistributedType.FSDP))
    with pytest.raises(ObliviateError, match="started 2 processes but accelerate joined 1"):
        devmod.check_launch(fake(1, DistributedType.NO))
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    devmod.check_launch(fake(2, DistributedType.MULTI_CPU))  # cpu_ddp.yaml


def test_unlearning_batches_follow_the_training_device():
    """The loop moves each collated batch (views and the cached reference log-probs) to accelerate's device."""
    from obliviate.unlearn.batch import BatchIndices, UnlearnData, collate

    ex = lambda n: {"input_ids": [1] * n + [7, 2], "labels": [-100] * n + [7, 2]}  # noqa: E731
    data = UnlearnData(forget=[ex(3), ex(1)], retain=[ex(2)], pad_id=0, ref_logps={"forget": torch.zeros(2)})
    batch = collate(data, BatchIndices([0, 1], [0, 0])).to("meta")
    tensors = [*batch.forget.values(), *batch.retain.values(), *batch.ref_logps.values()]
    assert tensors and {t.device.type for t in tensors} == {"meta"}
    assert batch.alternate is None
