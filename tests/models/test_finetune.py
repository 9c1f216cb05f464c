import torch

from obliviate.data.loading import load_split
from obliviate.models.finetune import FinetuneConfig, finetune
from obliviate.models.loading import load_model, model_fingerprint
from obliviate.models.logps import sequence_logps
from obliviate.data.format import Collator, QADataset


def _mean_prob(model, tok, records):
    batch = Collator(tok.pad_token_id)(list(QADataset(records, tok)))
    with torch.no_grad():
        return sequence_logps(model, batch).mean().exp().mean().item()


def test_finetune_learns_and_is_deterministic(world_dir, base_dir):
    records = load_split(world_dir, "full+world_facts")
    cfg = FinetuneConfig(epochs=4, batch_size=16, seed=1)
    runs = []
    for _ in range(2):
        model, tok = load_model(base_dir)
        before = _mean_prob(model, tok, records)
        log = finetune(model, tok, records, cfg, progress=False)
        runs.append((model_fingerprint(model), [r["loss"] for r in log]))
    assert runs[0] == runs[1], "same seed, same weights and losses"
    assert log[-1]["loss"] < log[0]["loss"]
    assert _mean_prob(model, tok, records) > 2 * before
    assert len(log) == 4 * 6  # 96 items / 16 per batch = 6 steps per epoch
    model, tok = load_model(base_dir)
    finetune(model, tok, records, FinetuneConfig(epochs=4, batch_size=16, seed=2), progress=False)
    assert model_fingerprint(model) != runs[0][0]


def test_grad_accumulation_matches_step_count(world_dir, base_dir):
    records = load_split(world_dir, "forget10")  # 8 items
    model, tok = load_model(base_dir)
    log = finetune(model, tok, records, FinetuneConfig(max_steps=3, batch_size=2, grad_accum=2), progress=False)
    assert [r["step"] for r in log] == [1, 2, 3]


def test_answer_nll_equals_the_transformers_labels_loss_and_its_gradients(world_dir, base_dir):
    """finetune's loss (lm_head at answer positions only) = HF's `labels=` token-mean cross-entropy: value and grads."""
    from obliviate.models.finetune import answer_nll

    model, tok = load_model(base_dir)
    records = load_split(world_dir, "forget10")[:4] + load_split(world_dir, "world_facts")[:2]
    batch = Collator(tok.pad_token_id)(list(QADataset(records, tok)))
    assert len(set(batch["attention_mask"].sum(-1).tolist())) > 1  # padded rows: padding must not count
    torch.manual_seed(0)
    for p in model.parameters():  # a non-degenerate model: random weights away from the init
        p.data.add_(0.05 * torch.randn_like(p))
    params = [p for p in model.parameters() if p.requires_grad]
    ours = answer_nll(model, batch)
    g_ours = torch.autograd.grad(ours, params)
    hf = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    g_hf = torch.autograd.grad(hf, params)
    assert abs(ours.item() - hf.item()) < 1e-5 * max(1.0, hf.item())
    for a, b in zip(g_ours, g_hf):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert sum(float(g.abs().sum()) for g in g_ours) > 0
