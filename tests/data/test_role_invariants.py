"""Issue 28, defect 5: invariants between roles. `attack mia --holdout forget10` compared the forget set with
itself (AUC 0.5); `--retain full` overlapped the forget set with no word. Now: members = non-members is an error,
a whole-set retain split is trained on minus the forget items with a warning giving the counts, any other
forget ∩ retain overlap is an error."""

import pytest

from obliviate import ObliviateError
from obliviate.attack.mia import mia_report
from obliviate.data import roles as R


def _qa(n, prefix="q"):
    return [{"question": f"{prefix}{i}?", "answer": f"a{i}"} for i in range(n)]


def test_mia_members_equal_to_non_members_is_an_error_and_partial_overlap_a_warning():
    forget = _qa(4)
    with pytest.raises(ObliviateError, match=r"MIA members \(forget10\) and non-members \(forget10\) are the same 4"):
        R.check_mia_roles(forget, [dict(r) for r in forget], ("forget10", "forget10"))
    with pytest.warns(UserWarning, match="^1 items are both MIA members"):
        R.check_mia_roles(forget, _qa(3, "h") + forget[:1])
    R.check_mia_roles(forget, _qa(4, "h"))  # disjoint: nothing
    items = [{"index": i, "question": r["question"], "answer": r["answer"], "mia": {"loss": 1.0}} for i, r in
             enumerate(forget)]
    with pytest.raises(ObliviateError, match="are the same 4 items"):
        mia_report(items, items)


def test_retain_overlap_rules():
    forget, other = _qa(4), _qa(6, "r")
    assert R.disjoint_retain(forget, other) is other
    assert R.disjoint_retain(forget, None) is None
    full = other[:3] + forget + other[3:]
    with pytest.warns(UserWarning, match=r"the retain set holds all 4 forget items \(4 of its 10 records.*"
                                         r"trains on the other 6"):
        assert R.disjoint_retain(forget, full) == other
    with pytest.raises(ObliviateError, match="share 2 items"):  # two splits that should be disjoint
        R.disjoint_retain(forget, other + forget[:2])
    with pytest.raises(ObliviateError, match="share 4 items"):  # the forget split itself as retain
        R.disjoint_retain(forget, [dict(r) for r in forget])


def test_attack_mia_holdout_forget10_is_one_line(unlearn_target_dir, world_dir, tmp_path, capsys):
    from obliviate.cli import main

    code = main(["attack", "mia", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--out",
                 str(tmp_path / "a"), "--holdout", "forget10"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "mia model" not in err, err  # refused before any scoring
    assert err.strip().splitlines()[-1].startswith("obliviate attack: error: MIA members (forget10")


def test_unlearn_retain_full_warns_with_counts(unlearn_target_dir, world_dir, tmp_path, capsys):
    from obliviate.cli import main

    assert main(["unlearn", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--recipe", "ga+gd",
                 "--retain", "full", "--out", str(tmp_path / "u"), "max_steps=1", "batch_size=2"]) == 0
    said = [line for line in capsys.readouterr().err.splitlines()
            if line.startswith("obliviate unlearn: warning: ") and "forget items" in line]  # one line (cli)
    assert said and "the retain set holds all" in said[0] and "trains on the other" in said[0]


def test_eval_roles_refuse_members_equal_to_non_members_and_warn_on_retain_overlap(world_dir):
    from obliviate.evaluate import EvalConfig
    from obliviate.evaluate.roles import resolve_roles

    quiet = dict(world_facts=None, real_authors=None, embedder=None)
    with pytest.raises(ObliviateError, match="are the same"):
        resolve_roles("tofu", world_dir, EvalConfig(holdout="forget10", retain=None, **quiet))
    with pytest.warns(UserWarning, match=r"the retain role \(full\) shares \d+ items with the forget role"):
        resolve_roles("tofu", world_dir, EvalConfig(retain="full", **quiet))
