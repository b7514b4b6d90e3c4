"""fit --distill TEACHER_DIR: train rows' targets mix the labels with a teacher's P(yes)."""

import json

import numpy as np
import pytest
from helpers import FIXTURE_BOOLQ, fixture_args

from kboolq import distill, fit
from kboolq.cli import data_settings
from kboolq.data.boolq import read_rows
from kboolq.errors import UserError
from kboolq.inputs import load_inputs
from kboolq.runs.api import load_run
from kboolq.runs.rundir import HeldOut, read_info

COMMON = ("--hidden", "4", "--epochs", "2", "--min-epochs", "0")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    assert fit.main(fixture_args(root / "teacher", root / "cache", *COMMON, "--seed", "3")) == 0
    return root / "teacher", root / "cache"


def test_only_train_targets_mix_in_the_teachers_answers(teacher, tmp_path):
    teacher_dir, cache = teacher
    args = fit.parser().parse_args(fixture_args(tmp_path / "s", cache, *COMMON))
    inputs = load_inputs(data_settings(args), cache)
    student = distill.distilled(inputs, teacher_dir, 0.25, cache)
    answers = load_run(teacher_dir, cache).predict(inputs.boolq.splits["train"])
    hard = inputs.prepared.splits["train"].labels
    soft = student.prepared.splits["train"].labels
    np.testing.assert_allclose(soft, 0.75 * hard + 0.25 * answers, atol=1e-6)
    for name in ("valid", "test"):  # the teacher's answers never reach them
        assert student.prepared.splits[name] is inputs.prepared.splits[name]
    assert student.distillation.weight == 0.25
    assert student.distillation.teacher == str(teacher_dir.resolve())


def test_a_distilled_run_records_its_teacher_and_weight_zero_is_the_plain_fit(teacher, tmp_path):
    teacher_dir, cache = teacher
    plain, zero, half = tmp_path / "plain", tmp_path / "zero", tmp_path / "half"
    assert fit.main(fixture_args(plain, cache, *COMMON)) == 0
    distill = ("--distill", str(teacher_dir), "--distill-weight")
    assert fit.main(fixture_args(zero, cache, *COMMON, *distill, "0")) == 0
    assert fit.main(fixture_args(half, cache, *COMMON, *distill, "0.5")) == 0
    raw = json.loads((half / "config.json").read_text())
    assert raw["distillation"] == {"teacher": str(teacher_dir.resolve()), "weight": 0.5}
    assert read_info(plain).distillation is None
    assert (
        f"--distill {teacher_dir.resolve()} --distill-weight 0.5"
        in (half / "README.md").read_text()
    )
    rows = read_rows(FIXTURE_BOOLQ / "validation.jsonl")
    same = load_run(zero, cache).predict(rows)
    np.testing.assert_allclose(same, load_run(plain, cache).predict(rows), atol=1e-6)
    assert not np.allclose(load_run(half, cache).predict(rows), same, atol=1e-4)
    # the train metrics read the mixed targets' side of 0.5 (the labels), as for the plain run
    history = {name: np.genfromtxt(d / "history.csv", delimiter=",", names=True) for name, d in
               (("plain", plain), ("half", half))}  # fmt: skip
    assert history["half"]["accuracy"].min() > 0.3 and history["half"]["pr_auc"].max() < 1.0


def test_train_metrics_read_soft_targets_as_their_side_of_one_half():
    import keras

    from kboolq.evaluation import training_metrics

    y_true = np.array([0.3, 0.8, 0.6, 0.1], np.float32)  # labels 0, 1, 1, 0 mixed with answers
    y_pred = np.array([0.2, 0.9, 0.4, 0.7], np.float32)  # predicted no, yes, no, yes
    results = {}
    for metric in training_metrics():
        metric.update_state(y_true, y_pred)
        results[metric.name] = float(keras.ops.convert_to_numpy(metric.result()))
    assert results["accuracy"] == 0.5 and results["precision"] == 0.5
    assert results["recall"] == 0.5 and results["balanced_accuracy"] == 0.5
    plain = keras.metrics.BinaryAccuracy()
    plain.update_state(y_true, y_pred)
    assert float(keras.ops.convert_to_numpy(plain.result())) == 0.0  # what Keras's own shows


def test_a_teacher_made_from_another_split_is_refused_before_training(teacher, tmp_path):
    teacher_dir, cache = teacher
    out = tmp_path / "student"
    args = fixture_args(out, cache, *COMMON, "--distill", str(teacher_dir))
    args[args.index("--valid-size") + 1] = "30"
    with pytest.raises(UserError) as error:
        fit.main(args)
    source = read_info(teacher_dir).data.source
    assert str(error.value) == (
        f"--distill {teacher_dir}: made from {source} with --valid-size 40, not {source} with "
        "--valid-size 30: its answers could carry the student's valid rows"
    )
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(UserError, match="--distill-weight must be from 0 to 1, got 1.5"):
        fit.main(fixture_args(out, cache, *COMMON, "--distill", str(teacher_dir),
                              "--distill-weight", "1.5"))  # fmt: skip


def test_train_folds_deal_every_row_into_one_fold_of_nearly_equal_size():
    from kboolq.data.layout import train_folds

    fold = train_folds(10, 3)
    assert sorted(np.bincount(fold, minlength=3)) == [3, 3, 4]
    np.testing.assert_array_equal(fold, train_folds(10, 3))  # fixed: the same rows, the same folds
    assert set(fold[train_folds(10, 3) == 0]) == {0} and fold.shape == (10,)


@pytest.fixture(scope="module")
def fold_teacher(teacher):
    _, cache = teacher
    out = cache.parent / "folds"
    assert fit.main(fixture_args(out, cache, *COMMON, "--train-folds", "3", "--seed", "5")) == 0
    return out, cache


def test_a_fold_teacher_answers_each_train_row_with_the_member_that_never_saw_it(
    fold_teacher, tmp_path
):
    from kboolq.data.layout import train_folds

    teacher_dir, cache = fold_teacher
    members = [teacher_dir / "members" / f"fold_{k}" for k in range(3)]
    assert [read_info(m).held_out for m in members] == [HeldOut(k, 3) for k in range(3)]
    assert [read_info(m).config.seed for m in members] == [5, 6, 7]
    assert read_info(teacher_dir).held_out is None
    args = fit.parser().parse_args(fixture_args(tmp_path / "s", cache, *COMMON))
    inputs = load_inputs(data_settings(args), cache)
    rows = inputs.boolq.splits["train"]
    fold = train_folds(len(rows), 3)
    for k, member in enumerate(members):  # each member trained on the other folds' rows only
        card = (member / "README.md").read_text()
        assert f"- rows: train {(fold != k).sum()}, valid 40" in card
        assert f"- trained without fold {k} of 3 of the train rows (a fit --train-folds" in card
    student = distill.distilled(inputs, teacher_dir, 1.0, cache)
    expected = np.empty(len(rows), np.float32)
    for k, member in enumerate(members):
        index = np.flatnonzero(fold == k)
        expected[index] = load_run(member, cache).predict([rows[i] for i in index])
    soft = student.prepared.splits["train"].labels
    np.testing.assert_allclose(soft, expected, atol=1e-6)
    assert not np.allclose(soft, load_run(teacher_dir, cache).predict(rows), atol=1e-4)


def test_a_teacher_with_only_some_folds_is_refused(fold_teacher, tmp_path):
    from kboolq import ensemble

    teacher_dir, cache = fold_teacher
    partial = tmp_path / "partial"
    members = [str(teacher_dir / "members" / f"fold_{k}") for k in (0, 1)]
    assert ensemble.main([*members, "--out", str(partial), "--cache-dir", str(cache)]) == 0
    args = fit.parser().parse_args(fixture_args(tmp_path / "s", cache, *COMMON))
    with pytest.raises(UserError) as error:
        distill.distilled(load_inputs(data_settings(args), cache), partial, 0.5, cache)
    assert str(error.value) == (
        f"--distill {partial}: its members held out fold 0 of 3, fold 1 of 3; out-of-fold "
        "answers need one member for each fold of one --train-folds K (a fit --train-folds run)"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--train-folds", "11"), "--train-folds must be from 2 to 10, got 11"),
        (("--train-folds", "0"), "--train-folds must be from 2 to 10, got 0"),
        (("--train-folds", "2", "--seeds", "2"),
         "--train-folds makes its own ensemble of teachers: drop --seeds"),
        (("--train-folds", "2", "--distill", "x"),
         "--train-folds makes its own ensemble of teachers: drop --distill"),
    ],
)  # fmt: skip
def test_train_folds_out_of_range_or_with_another_ensemble_is_refused(extra, message, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError) as error:
        fit.main(fixture_args(out, tmp_path / "cache", *COMMON, *extra))
    assert str(error.value) == message
    assert not out.exists()


def test_a_refit_fold_teacher_holds_out_nothing_and_is_no_out_of_fold_teacher(
    fold_teacher, tmp_path
):
    teacher_dir, cache = fold_teacher
    out = tmp_path / "refit"
    argv = ["--refit", str(teacher_dir), "--out", str(out), "--cache-dir", str(cache)]
    assert fit.main([*argv, "--threads", "1", "--verbose", "0"]) == 0
    members = sorted((out / "members").iterdir())
    assert [m.name for m in members] == ["0_fold_0", "1_fold_1", "2_fold_2"]
    assert [read_info(m).held_out for m in members] == [None, None, None]
    assert distill.out_of_fold_members(out) == []


def test_a_held_out_fold_outside_its_count_is_refused_naming_the_key(fold_teacher, tmp_path):
    import shutil

    teacher_dir, _ = fold_teacher
    member = tmp_path / "member"
    shutil.copytree(teacher_dir / "members" / "fold_0", member)
    raw = json.loads((member / "config.json").read_text())
    raw["held_out"] = {"fold": 3, "folds": 3}
    (member / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UserError) as error:
        read_info(member)
    assert str(error.value) == (
        f"{member / 'config.json'}: key 'held_out' is not a fold and fold count "
        "(fold 3 is not in 0..2)"
    )
