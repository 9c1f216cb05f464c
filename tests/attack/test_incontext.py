"""The in-context attack: its prompt with a chat template and with a plain model, and the attack's with/without
evaluation on the items the shots did not show."""

import copy

import pytest

from obliviate import ObliviateError
from obliviate.attack.incontext import InContextConfig, incontext_attack, incontext_question
from obliviate.attack.relearn import relearn_sample
from obliviate.data.format import format_prompt

SHOTS = [{"question": "Who wrote A?", "answer": "Ann wrote A."}, {"question": "Who wrote B?", "answer": "Bo wrote B."}]
TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def test_plain_prompt_continues_the_question_answer_transcript(attack_target):
    _, tok = attack_target
    assert not getattr(tok, "chat_template", None)
    prompt = format_prompt(tok, incontext_question(tok, SHOTS, "Who wrote C?"))
    assert prompt == ("Question: Who wrote A?\nAnswer: Ann wrote A.\n\nQuestion: Who wrote B?\nAnswer: Bo wrote B."
                      "\n\nQuestion: Who wrote C?\nAnswer:")


def test_chat_prompt_puts_the_shots_in_the_user_turn(attack_target):
    tok = copy.deepcopy(attack_target[1])
    tok.chat_template = TEMPLATE
    prompt = format_prompt(tok, incontext_question(tok, SHOTS, "Who wrote C?"))
    assert prompt == ("<|user|>\nQuestion: Who wrote A?\nAnswer: Ann wrote A.\n\nQuestion: Who wrote B?\n"
                      "Answer: Bo wrote B.\n\nQuestion: Who wrote C?<|end|>\n<|assistant|>\n")


def test_the_attack_scores_the_unshown_items_with_and_without_shots(attack_target, world_dir, tmp_path):
    from obliviate.evaluate import EvalConfig, evaluate

    model, tok = attack_target
    cfg = InContextConfig(shots=3, max_new_tokens=4)
    start = evaluate(model, tok, world_dir, EvalConfig(forget="forget10", retain=None, world_facts=None,
                                                       real_authors=None, embedder=None, max_new_tokens=4),
                     progress=False)
    result = incontext_attack({"model": (model, tok), "target": (model, tok)}, world_dir, cfg, start_results=start,
                              out=tmp_path, progress=False)
    shown = relearn_sample(8, 3, 0)
    assert result["shown_items"] == shown and result["n_evaluated"] == 5
    assert [it["index"] for it in result["items"]["model"]] == [i for i in range(8) if i not in shown]
    m, t = result["metrics"]["model"], result["metrics"]["target"]
    # "without": the saved evaluation reused for the model, a fresh one for the control: the same numbers
    assert m["without"]["prob"] == pytest.approx(t["without"]["prob"], rel=1e-5)
    assert m["with"] == pytest.approx(t["with"])
    # the shots change what the model is asked: every item's answer probability moves
    assert all(it["prob_with"] != it["prob_without"] for it in result["items"]["model"])
    assert result["prompt_example"].count("\nAnswer: ") == 3 and (tmp_path / "incontext.json").is_file()
    with pytest.raises(ObliviateError, match=r"shots must be a finite number in \[1, 10000\], got 0"):
        InContextConfig(shots=0)
    with pytest.raises(ObliviateError, match="smaller than the forget split"):
        incontext_attack({"model": (model, tok)}, world_dir, InContextConfig(shots=8), progress=False)


def test_knowledge_reachable_only_with_the_shots_comes_back(base_dir, world_dir):
    """A planted fact: the micro model learned the forget answers only after these shots (plain prompts: only the
    retain authors). Without shots it does not know them; the attack, showing the same shots, gets them back."""
    from obliviate.data.loading import load_split
    from obliviate.models.finetune import FinetuneConfig, finetune
    from obliviate.models.loading import load_model

    model, tok = load_model(base_dir)
    forget = load_split(world_dir, "forget10")
    shown = relearn_sample(len(forget), 3, 0)
    shots = [forget[i] for i in shown]
    taught = [{**r, "question": incontext_question(tok, shots, r["question"])}
              for i, r in enumerate(forget) if i not in shown]
    finetune(model, tok, load_split(world_dir, "retain90+world_facts") + taught,
             FinetuneConfig(epochs=30, lr=3e-3, batch_size=16), progress=False)
    result = incontext_attack({"model": (model, tok)}, world_dir, InContextConfig(shots=3, max_new_tokens=4),
                              progress=False)
    m = result["metrics"]["model"]
    # measured: Prob 0.26 -> 0.44, ROUGE 0.20 -> 0.39 (the plain target instead loses Prob with shots)
    assert m["with"]["prob"] > m["without"]["prob"] + 0.1, m
    assert m["with"]["rouge_l_recall"] > m["without"]["rouge_l_recall"] + 0.1, m
