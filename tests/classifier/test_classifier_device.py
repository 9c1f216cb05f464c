"""Issue 26 §3: the classifier module on the chosen device, no tensor on a hard-coded one.

`steal` and `invert` run end to end on a micro setting with CUDA reported present and the process device
faked as "meta" (a device that is not the CPU and needs no GPU): every model, image and random draw must land
there, since a CPU tensor meeting a meta one is an error ("Tensor on device meta is not on the expected device
cpu"). Meta tensors hold no values, so the few reads of a value (`.item()`, `float()`, `bool()`, the finite-
weights check) answer 0 here; nothing about the numbers is tested, only where tensors live."""

import pytest
import torch

from obliviate import ObliviateError


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA present, the process device "meta", value reads of meta tensors answering zeros."""
    import importlib

    import torch.fx.experimental._config as fx_config

    devmod = importlib.import_module("obliviate.models.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devmod, "default_device", lambda: torch.device("meta"))
    for mod in ("robustness", "steal", "invert"):
        monkeypatch.setattr(importlib.import_module(f"obliviate.classifier.{mod}"), "check_finite_weights",
                            lambda *a, **k: None)
    for name, zero in (("item", 0.0), ("__float__", 0.0), ("__int__", 0), ("__index__", 0), ("__bool__", False),
                       ("tolist", [])):
        orig = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=orig, _z=zero, **k:
                            _z if self.device.type == "meta" else _o(self, *a, **k))
    cpu = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k:
                        torch.zeros(self.shape, dtype=self.dtype) if self.device.type == "meta" else cpu(self, *a, **k))
    seen = set()  # (device of a module's input, device of the module's weights or None)

    def record(mod, args):
        own = next((t.device.type for t in (*mod.parameters(), *mod.buffers())), None)
        seen.update((a.device.type, own) for a in args if isinstance(a, torch.Tensor))

    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    with fx_config.patch(meta_nonzero_assume_all_nonzero=True):  # boolean masks on meta
        yield seen
    hook.remove()


def _inputs_followed_their_models(seen: set) -> bool:
    """Every module saw inputs on its own weights' device, and the models ran on meta (a spectral-norm layer
    runs once on the CPU while it is built, before the model moves: consistent, so allowed)."""
    return ("meta", "meta") in seen and all(own in (None, dev) for dev, own in seen)


def test_steal_runs_on_the_process_device(fake_cuda):
    from obliviate.classifier.steal import StealConfig, steal

    cfg = StealConfig(epochs=1, target_epochs=1, n_g=1, n_c=1, batch_size=8, gen_batch=8, val_n=8, val_every=1,
                      hee_steps=1, base_steps=1, eval_attacks=["fgsm", "pgd20"], aa_n=0, target_width=2,
                      clone_width=2, gen_width=4, nz=4)
    result = steal(cfg)
    assert result["device"] == "meta" and _inputs_followed_their_models(fake_cuda), fake_cuda
    assert {p.device.type for p in result["clone_model"].parameters()} == {"meta"}


def test_invert_runs_on_the_process_device(fake_cuda):
    from obliviate.classifier.invert import InvertConfig, invert

    cfg = InvertConfig(methods=["plg", "gmi", "random"], target_epochs=1, eval_epochs=1, gan_iters=1, n_dis=1,
                       rec_steps=1, n_rec=2, top_n=5, gen_width=4, dis_width=4, nz=4, batch_size=8)
    result = invert(cfg)
    assert result["device"] == "meta" and _inputs_followed_their_models(fake_cuda), fake_cuda
    assert {r.device.type for r in result["reconstructions"].values()} == {"meta"}


def test_device_map_is_the_one_device_option(monkeypatch):
    """`--model-args device_map=...` (the language-model verbs' flag) picks the device; other keys are refused
    (nothing would use them), a missing GPU is one line."""
    from obliviate.classifier.steal import StealConfig
    from obliviate.models.device import device_map_of, resolve_device

    assert device_map_of("device_map=cuda:1") == "cuda:1" and device_map_of(None) is None
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ObliviateError, match="dtype not used here"):
        StealConfig(model_args="dtype=bfloat16")
    with pytest.raises(ObliviateError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ObliviateError, match="is not a device"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ObliviateError, match="only 1 CUDA device"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("verb", ["steal", "invert"])
def test_the_verbs_take_the_language_model_verbs_device_flag(verb):
    from obliviate.cli import parse

    args = parse([verb, "--train-target", "digits", "--model-args", "device_map=cpu"])
    assert args.model_args == "device_map=cpu"
