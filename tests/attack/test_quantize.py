"""The quantization attack: torchao's rounding as documented, at most half a step per weight, the one-line errors,
and the attack undoing a planted sub-step "unlearning" at 4 bits but not at 8."""

import copy
import sys

import pytest
import torch

from obliviate import ObliviateError
from obliviate.attack.quantize import (QuantizeConfig, layer_group_size, quantize_attack, quantize_linear,
                                       quantize_model, torchao)

pytest.importorskip("torchao")


def _linear(weight: torch.Tensor) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def test_a_known_group_rounds_as_torchao_documents():
    """Affine (asymmetric) RTN, torchao's `choose_qparams_affine`: scale = (max(w,0) − min(w,0)) / (qmax − qmin),
    zero point = qmin − round(min/scale), q = clamp(round(w/scale) + zp), w' = (q − zp)·scale. 4 bits: qmin −8,
    qmax 7; this group: scale = 3/15 = 0.2, zp = −8 − round(−5) = −3."""
    w = torch.tensor([[-1.0, -0.55, 0.0, 0.27, 0.33, 1.0, 1.87, 2.0]])
    layer = _linear(w)
    q = quantize_linear(layer, 4, "rtn", group_size=8)
    assert float(q.scale.flatten()[0]) == pytest.approx(0.2)
    assert int(q.zero_point.flatten()[0]) == -3
    assert q.qdata.flatten().tolist() == [-8, -6, -3, -2, -1, 2, 6, 7]
    assert layer.weight.flatten().tolist() == pytest.approx([-1.0, -0.6, 0.0, 0.2, 0.4, 1.0, 1.8, 2.0], abs=1e-6)
    # 8 bits: qmin −128, qmax 127, scale 3/255
    layer8 = _linear(w)
    q8 = quantize_linear(layer8, 8, "rtn", group_size=8)
    assert float(q8.scale.flatten()[0]) == pytest.approx(3 / 255)
    assert (layer8.weight - w).abs().max() <= 3 / 255 / 2 + 1e-6


@pytest.mark.parametrize("bits", [8, 4, 3])
def test_weights_move_at_most_half_a_step(bits):
    torch.manual_seed(0)
    w = torch.randn(16, 96) * 0.1
    layer = _linear(w)
    q = quantize_linear(layer, bits, "rtn", group_size=32)
    step = q.scale.float().repeat_interleave(32, dim=1)  # (16, 96): each weight's group step
    moved = (layer.weight.detach() - w).abs()
    assert (moved <= step / 2 + 1e-6).all()
    assert moved.max() > 0  # something was rounded
    assert layer.weight.dtype == w.dtype and type(layer.weight) is torch.nn.Parameter  # plain weights again


def test_group_size_and_errors(monkeypatch):
    assert layer_group_size(576, 128) == 96  # SmolLM2's hidden size: the largest divisor below 128
    assert layer_group_size(512, 128) == 128 and layer_group_size(64, 128) == 64
    with pytest.raises(ObliviateError, match="4-bit only"):
        QuantizeConfig(method="tinygemm", bits=[8, 4])
    with pytest.raises(ObliviateError, match="bits must be"):
        QuantizeConfig(bits=[1])
    if not torch.cuda.is_available():
        with pytest.raises(ObliviateError, match="CUDA GPU only"):
            quantize_model(torch.nn.Sequential(torch.nn.Linear(8, 8)), 4, "tinygemm")
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # as if the extra were not installed
    with pytest.raises(ObliviateError, match=r"pip install 'obliviate\[quantize\]'"):
        torchao()


def _plant_substep_unlearning(model, tok, records, bits: int, group: int):
    """The model's weights moved away from the forget answers, each by less than half a `bits`-bit step and inside
    the cell it rounds to (the group's min/max cells untouched, so the grid is the target's): 4-bit rounding must
    give back the target's quantized weights exactly."""
    from obliviate.data.format import encode_qa, pad_batch, pad_token_id

    batch = pad_batch([encode_qa(tok, r["question"], r["answer"]) for r in records], pad_token_id(tok))
    model.zero_grad()
    model(**batch).loss.backward()
    head = model.get_output_embeddings()
    for m in [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head]:
        g = layer_group_size(m.in_features, group)
        probe = copy.deepcopy(m)
        q = quantize_linear(probe, bits, "rtn", g)
        scale = q.scale.float().repeat_interleave(g, dim=1)
        levels = q.qdata.int()
        inner = (levels > levels.view(levels.shape[0], -1, g).amin(-1).repeat_interleave(g, 1)) & \
                (levels < levels.view(levels.shape[0], -1, g).amax(-1).repeat_interleave(g, 1))
        with torch.no_grad():
            moved = probe.weight + 0.45 * scale * m.weight.grad.sign()  # gradient ascent on the forget NLL
            m.weight.copy_(torch.where(inner, moved, m.weight))
    model.zero_grad()


def test_quantization_undoes_a_substep_unlearning(attack_target_dir, world_dir):
    from obliviate.data.loading import load_split
    from obliviate.models.loading import load_model

    target = load_model(attack_target_dir)
    unlearned = load_model(attack_target_dir)
    _plant_substep_unlearning(unlearned[0], unlearned[1], load_split(world_dir, "forget10"), 4, 32)
    cfg = QuantizeConfig(bits=[8, 4], group_size=32, max_new_tokens=4)
    result = quantize_attack({"model": unlearned, "target": target}, world_dir, cfg, progress=False)
    row = {(r["model"], r["bits"]): r for r in result["rows"]}
    assert row[("model", None)]["forget_prob"] < 0.5 * row[("target", None)]["forget_prob"]  # it "forgot"
    assert row[("model", 4)]["forget_prob"] == pytest.approx(row[("target", 4)]["forget_prob"], rel=1e-5)
    assert row[("model", 4)]["recovery_prob"] > row[("model", 8)]["recovery_prob"] + 0.2  # 8-bit: 16x finer
    assert row[("target", None)]["recovery_prob"] == 1.0
    assert result["quantized"]["4"] == {"layers": 14, "group_sizes": [32]}
    # the models given are left unchanged
    again = quantize_attack({"model": unlearned}, world_dir, QuantizeConfig(bits=[4], group_size=32,
                                                                             max_new_tokens=4), progress=False)
    assert again["rows"][0]["forget_prob"] == pytest.approx(row[("model", None)]["forget_prob"])
    assert again["rows"][1]["recovery_prob"] is None and "recovery" in again["not_computed"]


def test_wmdp_mcq_accuracy_after_quantization_and_refusals(attack_target):
    """A raw-text benchmark where it applies: WMDP's MCQ splits scored at each bit width; reformat refuses it."""
    from pathlib import Path

    from obliviate.attack.probe_tables import quantize_table
    from obliviate.attack.reformat import ReformatConfig, reformat_attack
    from obliviate.report.glossary import unexplained

    wmdp = Path(__file__).parents[1] / "fixtures" / "wmdp"
    result = quantize_attack({"model": attack_target, "target": attack_target}, wmdp,
                             QuantizeConfig(bits=[4], group_size=32), progress=False)
    assert result["benchmark"] == "wmdp"
    row = result["rows"][0]
    assert {"mcq_wmdp_bio", "mcq_wmdp_cyber"} <= set(row) and "forget_prob" not in row
    assert row["recovery_mcq_wmdp_bio"] == 1.0  # the model is the target: full precision = the target's
    headers, _ = quantize_table({"m": [result]})
    assert "wmdp_bio MCQ accuracy" in headers and "recovery (wmdp_bio MCQ accuracy)" in headers
    assert unexplained(headers) == []
    with pytest.raises(ObliviateError, match="attack reformat does not apply to benchmark wmdp"):
        reformat_attack({"model": attack_target}, wmdp, ReformatConfig(), progress=False)
