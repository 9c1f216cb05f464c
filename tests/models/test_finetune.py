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
    log = finetune(model, tok, records, FinetuneConfig(max_steps=3, batch_size=4, grad_accum=2), progress=False)
    assert [r["step"] for r in log] == [1, 2, 3]
    assert (log[0]["micro_batch"], log[0]["grad_accum"]) == (2, 2)


def test_micro_batches_give_the_whole_batch_gradient(world_dir, base_dir):
    """accumulate_nll over 1 × 6, 2 × 3 and 6 × 1 rows: the token mean over the whole batch's answer tokens
    (padded rows of different lengths), so the same loss and gradient, not a mean of micro-batch means."""
    from obliviate.models.finetune import accumulate_nll, answer_nll

    model, tok = load_model(base_dir)
    model = model.double()
    records = load_split(world_dir, "forget10")[:4] + load_split(world_dir, "world_facts")[:2]
    batch = Collator(tok.pad_token_id)(list(QADataset(records, tok)))
    grads = []
    for micro in (6, 3, 1):
        loss = accumulate_nll(model, batch, micro, lambda x: x.backward())
        grads.append((float(loss), torch.cat([p.grad.flatten() for p in model.parameters()])))
        model.zero_grad(set_to_none=True)
    assert abs(grads[0][0] - float(answer_nll(model, batch))) < 1e-12
    for loss, g in grads[1:]:
        assert abs(loss - grads[0][0]) < 1e-9 * grads[0][0]
        assert float((g - grads[0][1]).norm() / grads[0][1].norm()) < 1e-6
    half = [answer_nll(model, {k: v[i:i + 3] for k, v in batch.items()}) / 2 for i in (0, 3)]
    assert abs(float(sum(half)) - grads[0][0]) > 1e-4  # a mean of means differs here


def test_finetune_split_does_not_change_the_run(world_dir, base_dir):
    records = load_split(world_dir, "forget10")
    logs = []
    for micro in (4, 1):
        model, tok = load_model(base_dir)
        logs.append(finetune(model, tok, records, FinetuneConfig(max_steps=3, batch_size=4, micro_batch=micro),
                             progress=False))
    for a, b in zip(*logs):
        assert abs(a["loss"] - b["loss"]) < 1e-5 * a["loss"]
        assert (a["micro_batch"], b["grad_accum"]) == (4, 4)


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


def test_length_grouped_batches_cover_every_item_once_per_epoch_with_less_padding():
    """LengthGroupedOrder: a permutation per epoch, reproducible per seed, and batches padded less than shuffled."""
    from obliviate.models.finetune import GROUP_BATCHES, LengthGroupedOrder

    lengths = [int(x) for x in torch.randint(10, 100, (200,), generator=torch.Generator().manual_seed(0))]
    batch = 8

    def padded(order):  # tokens the batches of `order` occupy, padding included
        return sum(max(lengths[i] for i in order[k:k + batch]) * len(order[k:k + batch])
                   for k in range(0, len(order), batch))

    sampler = LengthGroupedOrder(lengths, batch, torch.Generator().manual_seed(3))
    epochs = [list(sampler) for _ in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(len(lengths)))
    assert epochs[0] != epochs[1], "a new order every epoch"
    again = LengthGroupedOrder(lengths, batch, torch.Generator().manual_seed(3))
    assert [list(again) for _ in range(3)] == epochs, "same seed, same batches"
    shuffled = [torch.randperm(len(lengths), generator=torch.Generator().manual_seed(s)).tolist() for s in range(3)]
    assert sum(map(padded, epochs)) < 0.85 * sum(map(padded, shuffled))
    assert sum(lengths) <= min(map(padded, epochs))
    first = epochs[0][:GROUP_BATCHES * batch]  # a mega-batch is sorted by length (longest first)
    assert [lengths[i] for i in first[1:]] == sorted((lengths[i] for i in first[1:]), reverse=True)


def test_group_by_length_off_is_plain_shuffling(world_dir, base_dir):
    records = load_split(world_dir, "full+world_facts")
    logs = []
    for group in (True, False):
        model, tok = load_model(base_dir)
        logs.append([r["loss"] for r in finetune(model, tok, records, FinetuneConfig(max_steps=4, batch_size=16,
                                                                                     group_by_length=group),
                                                 progress=False)])
    assert logs[0] != logs[1], "the two settings draw different batches"


def test_lora_finetune_learns_and_leaves_a_plain_model(world_dir, base_dir):
    """lora=True trains only the adapter and merges it: the result is a plain model whose weights moved."""
    records = load_split(world_dir, "forget10")
    model, tok = load_model(base_dir)
    before, fp = _mean_prob(model, tok, records), model_fingerprint(model)
    flags = [p.requires_grad for p in model.parameters()]
    log = finetune(model, tok, records, FinetuneConfig(epochs=20, lr=1e-2, batch_size=8, lora=True, lora_r=8),
                   progress=False)
    assert not [n for n, _ in model.named_modules() if "lora" in n.lower()]
    assert type(model).__name__ == "LlamaForCausalLM" or "peft" not in type(model).__module__
    assert model_fingerprint(model) != fp
    assert [p.requires_grad for p in model.parameters()] == flags
    assert log[-1]["loss"] < log[0]["loss"]
    assert _mean_prob(model, tok, records) > 1.5 * before


def test_adamw_is_fused_and_equals_the_per_tensor_update():
    from obliviate.models.finetune import adamw

    torch.manual_seed(0)
    a = [torch.randn(5, 7, requires_grad=True), torch.randn(3, requires_grad=True), torch.randn(2, requires_grad=False)]
    b = [p.detach().clone().requires_grad_(p.requires_grad) for p in a]
    for p, q in zip(a, b):
        if p.requires_grad:
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
    start = a[0].detach().clone()
    ours = adamw(a, lr=0.1, weight_decay=0.05)
    plain = torch.optim.AdamW([q for q in b if q.requires_grad], lr=0.1, weight_decay=0.05, foreach=False)
    assert ours.defaults["fused"] and len(ours.param_groups[0]["params"]) == 2
    for _ in range(3):
        ours.step()
        plain.step()
    for p, q in zip(a, b):
        assert torch.allclose(p, q, atol=1e-6)
    assert (a[0] - start).abs().min() > 0.05  # every value moved
