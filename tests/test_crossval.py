"""Exact K-fold cross-validation (``--cv K``, :mod:`pipeline.crossval`): a
fold's model is a plain fit on the other rows, bit for bit; the fit on every
row is the path's; the CV losses against numpy; the same bytes for any
partitioning and worker count; the one-standard-error rule; resume; the
lockstep's error handling; the refusals."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cluster import ClusterSpec
from pipeline.config import TrainConfig
from pipeline.crossval import ALL_ROWS, Lockstep, fold_summary
from pipeline.data import FOLD_CODE, Folds, open_dataset
from pipeline.errors import ConfigError, DataWarning
from pipeline.fitting import fit
from pipeline.jobs import run_job
from pipeline.kernel import KernelSpec, chunk_partials
from pipeline.model import Model
from pipeline.objective import Penalty
from pipeline.outputs import OutputDir
from pipeline.paths import PathPoint, choose
from pipeline.reduce import InProcessEvaluator
from pipeline.train import train
from tests.conftest import fair_frame, run_cli, write_frame

FOLDS = 4


def document(out) -> dict:
    return json.loads(OutputDir(out).path_summary.read_text())


OPTIONS = dict(penalty=Penalty(l1=1.0), path=4, cv=FOLDS)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_frame(tmp_path_factory.mktemp("fair") / "data", fair_frame())


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cv") / "out"
    model = train(TrainConfig(data=data, label="y", cluster=None, out=str(out), **OPTIONS))
    return model, document(out), out


def fold_rows(n_rows: int, fold: int) -> np.ndarray:
    return Folds(FOLDS).of(np.arange(n_rows, dtype=np.int64), None) == fold


@pytest.mark.parametrize("fold", [0, 3])
def test_a_fold_model_is_a_plain_fit_on_the_other_rows(reference, tmp_path, fold):
    _, path, out = reference
    rows = fair_frame()
    others = write_frame(tmp_path / "others", rows[~fold_rows(len(rows), fold)].reset_index(drop=True))
    for point in (0, 2):  # the first from zero, a later one warm-started from the fold's previous model
        l2, l1 = path["points"][point]["l2"], path["points"][point]["l1"]
        init = None if point == 0 else str(out / "path" / f"{point - 1:03d}" / f"fold-{fold}")
        plain = train(TrainConfig(data=others, label="y", cluster=None, penalty=Penalty(l2=l2, l1=l1), init=init))
        assert plain.digest == Model.load(out / "path" / f"{point:03d}" / f"fold-{fold}").digest


def test_the_reader_groups_a_batchs_rows_by_fold(data):
    """With folds, a batch's rows come grouped by fold, in order within each
    (so that each fit of a cross-validation pass reads slices, not every row):
    the same rows, each with its label coded with its fold."""
    plain = open_dataset(data, label="y")
    folded = plain.with_folds(Folds(FOLDS))
    fold = Folds(FOLDS).of(np.arange(plain.n_samples, dtype=np.int64), None)
    for chunk in plain.chunks:
        rows = np.arange(chunk.offset, chunk.offset + chunk.n_rows)
        order = np.argsort(fold[rows], kind="stable")
        whole = plain.reader(chunk)
        expected = whole.X[order], whole.y[order] + FOLD_CODE * fold[rows][order]
        got = folded.reader(chunk)
        assert got.X.tobytes() == expected[0].tobytes() and got.y.tobytes() == expected[1].tobytes()
        assert got.X.flags.f_contiguous
        batches = list(folded.reader.iter_batches(chunk, 700))
        assert all((np.diff(np.floor(b.y / FOLD_CODE)) >= 0).all() for b in batches)
        assert sorted(np.concatenate([b.y for b in batches]).tolist()) == sorted(got.y.tolist())


def test_the_fit_on_every_row_is_the_path_without_folds(reference, data, tmp_path):
    model, path, _ = reference
    train(TrainConfig(data=data, label="y", cluster=None, out=str(tmp_path / "out"), penalty=Penalty(l1=1.0), path=4))
    assert [p["digest"] for p in document(tmp_path / "out")["points"]] == [p["digest"] for p in path["points"]]
    assert model.digest == path["points"][path["chosen"]]["digest"]


def test_the_cv_losses_are_the_held_out_losses(reference):
    _, path, out = reference
    rows = fair_frame()
    y = rows.pop("y").to_numpy()
    X = rows.to_numpy()
    for point in path["points"]:
        losses = []
        for fold in range(FOLDS):
            held = fold_rows(len(y), fold)
            model = Model.load(out / "path" / f"{point['index']:03d}" / f"fold-{fold}")
            margin = X[held] @ model.coef_array + model.intercept
            losses.append(float(np.mean(np.logaddexp(0.0, margin) - y[held] * margin)))
        assert point["cv_losses"] == pytest.approx(losses, rel=1e-12)
        mean, std = fold_summary(point["cv_losses"])
        assert (point["cv_loss"], point["cv_std"]) == (mean, std)
        assert std == pytest.approx(np.std(losses, ddof=1), rel=1e-9)
    assert path["chosen"] == int(np.argmin([p["cv_loss"] for p in path["points"]]))


def test_any_partitioning_gives_the_same_bytes(reference, tmp_path):
    model, path, _ = reference
    data = write_frame(tmp_path / "data", fair_frame(), row_group=555, files=3)
    again = train(TrainConfig(data=data, label="y", cluster=None, out=str(tmp_path / "out"), **OPTIONS))
    assert document(tmp_path / "out") == path and again.digest == model.digest


@pytest.mark.cluster
@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_a_two_worker_cluster_gives_the_same_bytes(reference, data, tmp_path, cache):
    model, path, _ = reference
    on_cluster = train(
        TrainConfig(
            data=data, label="y", cluster=ClusterSpec(n_workers=2), cache=cache, out=str(tmp_path / "out"), **OPTIONS
        )
    )
    assert document(tmp_path / "out") == path and on_cluster.digest == model.digest


def test_cv_alone_scores_the_configured_penalty_and_the_1se_rule(data, tmp_path):
    model = train(
        TrainConfig(data=data, label="y", cluster=None, out=str(tmp_path / "one"), penalty=Penalty(l2=0.01), cv=3)
    )
    one = document(tmp_path / "one")
    assert len(one["points"]) == 1 and one["points"][0]["l2"] == 0.01 and len(one["points"][0]["cv_losses"]) == 3
    assert model.l2 == 0.01
    options = dict(data=data, label="y", cluster=None, penalty=Penalty(l1=1.0), path=6, cv=3)
    train(TrainConfig(**options, out=str(tmp_path / "min")))
    train(TrainConfig(**options, out=str(tmp_path / "1se"), cv_rule="1se"))
    by_min, by_1se = document(tmp_path / "min"), document(tmp_path / "1se")
    assert by_min["points"] == by_1se["points"] and by_1se["chosen"] <= by_min["chosen"]
    best = by_min["points"][by_min["chosen"]]
    bound = best["cv_loss"] + best["cv_std"] / np.sqrt(3)
    assert by_1se["chosen"] == min(k for k, p in enumerate(by_1se["points"]) if p["cv_loss"] <= bound)


def test_a_feature_constant_on_the_rows_of_positive_weight_gets_0_in_every_fold(tmp_path):
    """A column that varies only on rows of weight 0 is constant on every
    fold's training rows: each fold's fit and the final one give it 0 (the
    folds' statistics keep their extremes over the rows of positive weight)."""
    frame = fair_frame()
    rows = np.arange(len(frame))
    frame["w"] = np.where(rows % 4 == 0, 0.0, 1.0)
    frame["promo"] = np.where(rows % 8 == 0, 1.0, 0.0)  # (non-zero only where w is 0)
    data = write_frame(tmp_path / "data", frame)
    out = tmp_path / "out"
    with pytest.warns(DataWarning, match="feature 'promo' is constant"):
        model = train(
            TrainConfig(data=data, label="y", weight="w", cluster=None, out=str(out), penalty=Penalty(l2=1e-9), cv=3)
        )
    promo = model.features.index("promo")
    assert model.coef[promo] == 0.0
    for fold in range(3):
        assert Model.load(out / "path" / "000" / f"fold-{fold}").coef[promo] == 0.0


class Killed(Exception):
    pass


def test_a_killed_cv_job_resumes_to_the_same_bytes(reference, data, tmp_path):
    model, path, _ = reference
    target = TrainConfig(data=data, label="y", cluster=None, out=str(tmp_path / "out"), **OPTIONS)
    starts = []

    def kill_in_the_third_point(record) -> None:
        starts.append(record.iteration)
        if starts.count(0) == 3 and record.iteration == 1:
            raise Killed

    with pytest.raises(Killed):
        run_job(target, progress=kill_in_the_third_point)
    assert len(document(tmp_path / "out")["points"]) == 2
    notes: list[str] = []
    resumed = run_job(target, OutputDir(tmp_path / "out").read_job().job_id, notify=notes.append)
    assert resumed.digest == model.digest and document(tmp_path / "out") == path
    assert f"path point path/002: {FOLDS + 1} fit(s) resumed from their states" in notes


def test_what_cross_validation_cannot_do_is_refused(data, tmp_path):
    base = dict(data=data, label="y", penalty=Penalty(l1=1.0))
    for options, match in (
        (dict(cv=1), "cv"),
        (dict(cv=3, validation_fraction=0.2), "validation_fraction"),
        (dict(cv=3, init=str(tmp_path)), "init"),
        (dict(cv=3, family="multinomial"), "multinomial"),
        (dict(cv=3, cv_rule="best"), "cv_rule"),
    ):
        with pytest.raises(ConfigError, match=match):
            TrainConfig(**base, **options)
    with pytest.raises(ConfigError, match="penalty"):
        TrainConfig(data=data, label="y", cv=3)
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"x": rng.normal(size=90), "y": np.repeat([0, 1, 2], 30)}), tmp_path / "three.parquet")
    with pytest.raises(ConfigError, match="cv: .*3 classes"):
        train(TrainConfig(data=str(tmp_path / "three.parquet"), label="y", cluster=None, cv=3, penalty=Penalty(l2=1.0)))


class FailingEvaluator:
    """A fake evaluator (no data layer) whose third pass fails."""

    def __init__(self, evaluator) -> None:
        self.evaluator = evaluator
        self.n_features = evaluator.n_features
        self.calls = 0

    def partials(self, coef, spec=KernelSpec()):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("pass failed")
        return self.evaluator.partials(coef, spec)

    def fold_stats(self, n_folds, categories=None):
        return self.evaluator.fold_stats(n_folds, categories)


def test_a_failed_pass_stops_every_fit_of_the_lockstep():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    y = (rng.random(400) < 0.5) + 2.0 * Folds(2).of(np.arange(400), None)
    lockstep = Lockstep(FailingEvaluator(InProcessEvaluator([(X, y, None)], 3)), 2)
    members = [lockstep.member(0, 0), lockstep.member(1, 1), lockstep.member(2, ALL_ROWS)]
    threads = threading.active_count()
    with pytest.raises(RuntimeError, match="pass failed"):
        lockstep.run([lambda member=member: fit(member, penalty=Penalty(l2=0.1)) for member in members])
    assert threading.active_count() == threads  # (every fit stopped and its thread joined)
    before = threading.active_count()
    # the same lockstep serves a fresh run afterwards, and each fit equals the plain one
    lockstep.evaluator.calls = 10
    fits = lockstep.run([lambda member=member: fit(member, penalty=Penalty(l2=0.1)) for member in members])
    assert threading.active_count() == before  # (every fit's thread joined)
    rows = Folds(2).of(np.arange(400), None) != 0
    plain = fit(InProcessEvaluator([(np.asfortranarray(X[rows]), (y[rows] % 2), None)], 3), penalty=Penalty(l2=0.1))
    assert fits[0].coef.tobytes() == plain.coef.tobytes()
    assert chunk_partials(X, y % 2, fits[2].result.coef, None, KernelSpec()).n_samples == 400


def test_the_choice_rules():
    def point(k, mean, std):
        return PathPoint(k, 1.0, 0.0, 1.0, 0.5, None, 0, 1, 1, True, "d", [mean] * 4, mean, std)

    points = [point(0, 0.50, 0.02), point(1, 0.41, 0.02), point(2, 0.40, 0.04), point(3, 0.405, 0.0)]
    assert choose(points, "min") == 2
    assert choose(points, "1se") == 1  # 0.41 <= 0.40 + 0.04 / 2


def test_the_estimator_gives_the_cli_bytes(reference):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from pipeline import LogisticRegressionCV

    model, path, _ = reference
    rows = fair_frame()
    y = np.where(rows.pop("y").to_numpy() > 0, "yes", "no")
    estimator = LogisticRegressionCV(cv=FOLDS, path=4, l1=1.0).fit(rows.to_numpy(), y)
    assert_cli_bytes(estimator, model, path)
    assert estimator.chosen_ == path["chosen"] and list(estimator.classes_) == ["no", "yes"]
    assert estimator.strengths_.tolist() == [p["strength"] for p in path["points"]]
    assert estimator.coefs_path_.shape == (4, rows.shape[1] + 1)
    assert set(estimator.predict(rows.to_numpy()[:50])) <= {"no", "yes"}
    scaled = make_pipeline(StandardScaler(), LogisticRegressionCV(cv=3, path=3, l1=0.0, l2=1.0)).fit(rows, y)
    assert 0.6 < scaled.score(rows, y) < 1.0
    # l2 alone walks ridge from l2 (not a 1:1 elastic net, as when l1 defaulted to 1.0); neither: the lasso
    ridge = LogisticRegressionCV(cv=3, path=3, l2=1.0).fit(rows.to_numpy(), y)
    assert ridge.l1_ == 0.0 and ridge.strengths_[0] == 1.0 and ridge.get_params()["l1"] is None
    lasso = LogisticRegressionCV(cv=3, path=3).fit(rows.to_numpy(), y)
    assert lasso.l2_ == 0.0 and lasso.l1_ > 0.0
    with pytest.raises(ValueError, match="binary"):
        LogisticRegressionCV(cv=3).fit(rows.to_numpy()[:90], np.repeat([0, 1, 2], 30))


def test_the_estimator_takes_scikit_learn_splitters_whose_test_sets_partition_the_rows():
    from sklearn.model_selection import GroupKFold, KFold, ShuffleSplit, StratifiedKFold, TimeSeriesSplit

    from pipeline import LogisticRegression, LogisticRegressionCV

    rows = fair_frame().iloc[::8]
    y = (rows.pop("y").to_numpy() > 0).astype(int)
    assert 0 < y.mean() < 1
    X = rows.to_numpy()
    splitter = StratifiedKFold(3, shuffle=True, random_state=0)
    given = LogisticRegressionCV(cv=splitter, path=None, l1=0.0, l2=0.05, tol=1e-10).fit(X, y)
    listed = LogisticRegressionCV(cv=list(splitter.split(X, y)), path=None, l1=0.0, l2=0.05, tol=1e-10).fit(X, y)
    assert given.cv_losses_.tobytes() == listed.cv_losses_.tobytes()
    # each fold's held-out loss is that of a fit on the other rows, evaluated on the fold's rows
    for fold, (train_rows, test_rows) in enumerate(splitter.split(X, y)):
        alone = LogisticRegression(l2=0.05, tol=1e-10).fit(X[train_rows], y[train_rows])
        proba = alone.predict_proba(X[test_rows])[:, 1]
        held_out = -np.mean(y[test_rows] * np.log(proba) + (1 - y[test_rows]) * np.log1p(-proba))
        assert given.cv_losses_[0][fold] == pytest.approx(held_out, rel=1e-7)
    assert LogisticRegressionCV(cv=KFold(4), path=None, l2=0.05, l1=0.0).fit(X, y).cv_losses_.shape == (1, 4)
    # a splitter that takes groups gets them, as from scikit-learn's own LogisticRegressionCV.fit
    groups = np.arange(len(y)) % 5
    grouped = LogisticRegressionCV(cv=GroupKFold(3), path=None, l2=0.05, l1=0.0).fit(X, y, groups=groups)
    pairs = list(GroupKFold(3).split(X, y, groups))
    listed = LogisticRegressionCV(cv=pairs, path=None, l2=0.05, l1=0.0).fit(X, y)
    assert grouped.cv_losses_.tobytes() == listed.cv_losses_.tobytes()
    with pytest.raises(ValueError, match="groups has 3 values"):
        LogisticRegressionCV(cv=GroupKFold(3), path=None, l2=0.05, l1=0.0).fit(X, y, groups=[0, 1, 2])
    # without a path the penalty is the one given: none given is refused (it was the lasso
    # at l1=1.0, whose model was all zeros, without a word)
    for no_path in (None, 0):  # (path=0 is no path too: it was the lasso at l1=1.0 as well)
        with pytest.raises(ValueError, match="cross-validation needs a penalty"):
            LogisticRegressionCV(cv=KFold(4), path=no_path).fit(X, y)
    for splitter, fragment in [
        (ShuffleSplit(3, test_size=0.2, random_state=0), "partition the rows"),
        (TimeSeriesSplit(3), "partition the rows"),
        ("folds", "cv must be"),
        (1, "cv must be"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            LogisticRegressionCV(cv=splitter, path=None, l2=0.05, l1=0.0).fit(X, y)
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        LogisticRegressionCV(cv=3).fit(X[:90], np.repeat([0, 1, 2], 30))


def test_folds_without_rows_too_many_folds_and_a_missing_key_are_clear_errors(tmp_path):
    from pipeline.errors import ColumnNotFoundError, EmptyDatasetError

    tiny = write_frame(tmp_path / "tiny", fair_frame().iloc[:5].assign(y=[0.0, 1.0, 0.0, 1.0, 1.0]))
    assert not all(fold_rows(5, k).any() for k in range(5))  # (5 rows in 5 folds: some fold is empty)
    with pytest.raises(EmptyDatasetError, match="fold .* has no rows"):
        train(TrainConfig(data=tiny, label="y", cluster=None, penalty=Penalty(l2=1.0), cv=5))
    with pytest.raises(ConfigError, match="6 folds for 5 rows"):
        train(TrainConfig(data=tiny, label="y", cluster=None, penalty=Penalty(l2=1.0), cv=6))
    with pytest.raises(ConfigError, match="cv"):
        TrainConfig(data=tiny, label="y", penalty=Penalty(l2=1.0), cv=101)
    data = write_frame(tmp_path / "data", fair_frame().iloc[::20])
    with pytest.raises(ColumnNotFoundError, match="validation key column 'k'"):
        train(TrainConfig(data=data, label="y", cluster=None, penalty=Penalty(l2=1.0), cv=3, validation_key="k"))


def assert_resumes_from_the_fits_states(target: TrainConfig, tmp_path) -> None:
    """``target`` (3 folds, one strength, output in ``tmp_path / "out"``)
    killed at its fits' second iteration resumes each fit from its saved
    state to the bytes of an uninterrupted run."""
    reference = train(dataclasses.replace(target, out=str(tmp_path / "reference")))

    def kill(record) -> None:
        if record.iteration == 2:
            raise Killed

    with pytest.raises(Killed):
        run_job(target, progress=kill)
    notes: list[str] = []
    resumed = run_job(target, OutputDir(tmp_path / "out").read_job().job_id, notify=notes.append)
    assert resumed.digest == reference.digest
    assert "path point path/000: 4 fit(s) resumed from their states" in notes


def assert_cli_bytes(estimator, model: Model, path: dict) -> None:
    """The estimator's model and CV losses are the command's (``model``, ``path``: its path.json)."""
    assert estimator.coef_[0].tobytes() == model.coef_array.tobytes()
    assert estimator.intercept_.tobytes() == np.array([model.intercept]).tobytes()
    assert estimator.cv_losses_.tolist() == [p["cv_losses"] for p in path["points"]]


def test_a_job_killed_in_its_only_strength_resumes_from_the_fits_states(data, tmp_path):
    target = TrainConfig(data=data, label="y", cluster=None, out=str(tmp_path / "out"), penalty=Penalty(l2=1e-3), cv=3)
    assert_resumes_from_the_fits_states(target, tmp_path)


# --------------------------------------------------------------------------- categorical columns and missing values


def categorical_frame():
    """statsmodels' fair data with its occupations as categorical columns --
    the wife's as text, the husband's integer-coded (named categorical) --
    and every 13th age missing (null)."""
    rows = fair_frame()
    y = rows.pop("y")
    rows["age"] = rows["age"].mask(np.arange(len(rows)) % 13 == 0)
    rows["occupation"] = "occ-" + rows.pop("occupation").astype(int).astype(str)
    rows["occupation_husb"] = rows.pop("occupation_husb").astype(np.int64)
    rows["y"] = y
    return rows


CATEGORICAL = dict(categorical=("occupation_husb",), missing="mean", penalty=Penalty(l1=1.0), path=3, cv=FOLDS)


@pytest.fixture(scope="module")
def categorical_data(tmp_path_factory):
    return write_frame(tmp_path_factory.mktemp("fair-categorical") / "data", categorical_frame())


@pytest.fixture(scope="module")
def categorical_reference(categorical_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cv-categorical") / "out"
    model = train(TrainConfig(data=categorical_data, label="y", cluster=None, out=str(out), **CATEGORICAL))
    return model, document(out), out


def test_a_categorical_fold_model_is_a_plain_fit_on_the_other_rows(categorical_reference, tmp_path):
    """With categorical columns and imputed missing values: every level has
    rows in each fold's training rows here, so a plain fit on them learns the
    same levels; its missing values take those rows' mean, as the fold's fit."""
    model, path, out = categorical_reference
    assert [name for name in model.features if name.startswith("occupation=")] == [
        f"occupation=occ-{k}" for k in range(1, 7)
    ]
    assert model.impute is not None and len(path["points"]) == 3
    rows = categorical_frame()
    fold = 2
    others = write_frame(tmp_path / "others", rows[~fold_rows(len(rows), fold)].reset_index(drop=True))
    options = {key: CATEGORICAL[key] for key in ("categorical", "missing")}
    for point in (0, 2):
        l2, l1 = path["points"][point]["l2"], path["points"][point]["l1"]
        init = None if point == 0 else str(out / "path" / f"{point - 1:03d}" / f"fold-{fold}")
        plain = train(
            TrainConfig(data=others, label="y", cluster=None, penalty=Penalty(l2=l2, l1=l1), init=init, **options)
        )
        fold_model = Model.load(out / "path" / f"{point:03d}" / f"fold-{fold}")
        assert plain.digest == fold_model.digest
        assert fold_model.impute != model.impute  # (the fold's training rows' mean, not every row's)


def test_the_categorical_cv_losses_are_the_held_out_losses(categorical_reference):
    from pipeline import LogisticRegression

    _, path, out = categorical_reference
    rows = categorical_frame()
    y = rows.pop("y").to_numpy()
    for point in path["points"]:
        losses = []
        for fold in range(FOLDS):
            held = fold_rows(len(y), fold)
            scorer = LogisticRegression.from_model(str(out / "path" / f"{point['index']:03d}" / f"fold-{fold}"))
            margin = scorer.decision_function(rows[held])
            losses.append(float(np.mean(np.logaddexp(0.0, margin) - y[held] * margin)))
        assert point["cv_losses"] == pytest.approx(losses, rel=1e-12)


def test_categorical_cross_validation_gives_the_same_bytes_for_any_partitioning(categorical_reference, tmp_path):
    model, path, _ = categorical_reference
    data = write_frame(tmp_path / "data", categorical_frame(), row_group=555, files=3)
    again = train(TrainConfig(data=data, label="y", cluster=None, out=str(tmp_path / "out"), **CATEGORICAL))
    assert document(tmp_path / "out") == path and again.digest == model.digest


@pytest.mark.cluster
@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_categorical_cross_validation_on_two_workers_gives_the_same_bytes(
    categorical_reference, categorical_data, tmp_path, cache
):
    model, path, _ = categorical_reference
    on_cluster = train(
        TrainConfig(
            data=categorical_data,
            label="y",
            cluster=ClusterSpec(n_workers=2),
            cache=cache,
            out=str(tmp_path / "out"),
            **CATEGORICAL,
        )
    )
    assert document(tmp_path / "out") == path and on_cluster.digest == model.digest


def test_the_estimator_cross_validates_a_frame_with_categorical_columns_to_the_cli_bytes(categorical_reference):
    from pipeline import LogisticRegressionCV

    model, path, _ = categorical_reference
    rows = categorical_frame()
    y = np.where(rows.pop("y").to_numpy() > 0, "yes", "no")
    estimator = LogisticRegressionCV(cv=FOLDS, path=3, l1=1.0, categorical=["occupation_husb"], missing="mean").fit(
        rows, y
    )
    assert_cli_bytes(estimator, model, path)
    assert estimator.chosen_ == path["chosen"]
    assert [v.column for v in estimator.vocabularies_] == ["occupation", "occupation_husb"]
    assert estimator.impute_.tolist() == model.impute
    assert estimator.coefs_path_.shape == (3, len(model.features) + 1)
    # a dask DataFrame is computed first (it was read as text it could not count)
    import dask.dataframe as dd

    lazy = LogisticRegressionCV(cv=FOLDS, path=3, l1=1.0, categorical=["occupation_husb"], missing="mean")
    assert lazy.fit(dd.from_pandas(rows, npartitions=3), y).coef_.tobytes() == estimator.coef_.tobytes()
    # scoring: a null age takes the fitted mean, an unseen occupation adds nothing
    scored = rows[:40].assign(occupation=["occ-9"] * 40)
    assert set(estimator.predict(scored)) <= {"no", "yes"}
    assert np.isfinite(estimator.decision_function(rows[:40])).all()
    # a text column is categorical from its dtype alone; without a missing-value policy a null is refused
    with pytest.raises(ValueError, match=r"^Input X contains NaN\. LogisticRegressionCV .* give missing='mean'"):
        LogisticRegressionCV(cv=3, path=None, l2=1.0).fit(rows, y)


def test_a_killed_categorical_cv_job_resumes_to_the_same_bytes(categorical_data, tmp_path):
    """Each fit's saved state (its level shares too) takes it on from where it stopped."""
    options = {key: CATEGORICAL[key] for key in ("categorical", "missing")}
    target = TrainConfig(
        data=categorical_data, label="y", cluster=None, out=str(tmp_path / "out"), penalty=Penalty(l2=1e-3), cv=3,
        **options,
    )  # fmt: skip
    assert_resumes_from_the_fits_states(target, tmp_path)


def test_the_estimator_gives_the_cli_bytes_with_indicators_hashing_and_sample_weights(tmp_path):
    """``missing="indicator"``, a hashed text column and sample weights: the
    command's model and CV losses on the same rows as Parquet (a weight column)."""
    from pipeline import LogisticRegressionCV

    rows = categorical_frame()
    rows.insert(0, "w", np.random.default_rng(5).uniform(0.5, 2.0, len(rows)))
    data = write_frame(tmp_path / "data", rows)
    options = dict(penalty=Penalty(l2=0.01), cv=3, categorical=("occupation_husb",), missing="indicator")
    hashing = dict(hash_buckets=8, hashed=("occupation",))
    out = tmp_path / "out"
    model = train(TrainConfig(data=data, label="y", weight="w", cluster=None, out=str(out), **options, **hashing))
    assert "age=<missing>" in model.features and "occupation=#7" in model.features
    y = rows.pop("y").to_numpy()
    weights = rows.pop("w").to_numpy()
    estimator = LogisticRegressionCV(
        cv=3, path=None, l2=0.01, categorical=["occupation_husb"], missing="indicator", hash_buckets=8,
        hashed=["occupation"],
    ).fit(rows, y, sample_weight=weights)  # fmt: skip
    assert_cli_bytes(estimator, model, document(out))
    assert estimator.indicator_features_.tolist() == [rows.columns.get_loc("age")]


def test_fit_parquets_refusal_gives_the_command_of_the_estimators_settings(categorical_data, tmp_path):
    """The command it suggests runs, and gives the model that the estimator
    fits on the same rows (it left out the penalty and the categorical and
    missing-value settings, so that the command refused to run)."""
    import shlex

    from pipeline import LogisticRegressionCV

    settings = dict(cv=3, path=2, l2=0.5, categorical=["occupation_husb"], missing="mean", max_categories=5)
    estimator = LogisticRegressionCV(**settings)
    with pytest.raises(NotImplementedError) as refused:
        estimator.fit_parquet(categorical_data, label="y")
    command = str(refused.value).split("`")[1]
    out = tmp_path / "out"
    words = shlex.split(command.replace("--out DIR", f"--out {out} --in-process"))
    assert words[:2] == ["pipeline", "train"] and "--max-categories" in words and "--missing" in words
    done = run_cli(*words[1:])
    assert done.returncode == 0, done.stderr
    rows = categorical_frame()
    y = rows.pop("y").to_numpy()
    fitted = LogisticRegressionCV(**settings).fit(rows, y)
    assert fitted.coef_[0].tobytes() == Model.load(out).coef_array.tobytes()


def test_what_only_a_folds_training_rows_lack_is_said_of_that_fold(tmp_path):
    """A column whose values all fall in fold 0: fold 0's fit has none of them
    (its training rows are the other folds'); the refusal names that fold --
    it read as if the column were missing in every row of the dataset."""
    from pipeline import LogisticRegressionCV
    from pipeline.errors import MissingValueError

    rows = fair_frame().iloc[::7].reset_index(drop=True)
    y = rows.pop("y").to_numpy()
    fold = Folds(3).of(np.arange(len(rows), dtype=np.int64), None)
    rows["v"] = np.where(fold == 0, rows["age"], np.nan)
    data = write_frame(tmp_path / "data", rows.assign(y=y))
    config = TrainConfig(data=data, label="y", cluster=None, penalty=Penalty(l2=1.0), cv=3, missing="mean")
    others = int(np.count_nonzero(fold != 0))
    with pytest.raises(
        MissingValueError, match=rf"^cross-validation fold 0 of 3 \(its training rows\): .*'v'.* {others} rows"
    ):
        train(config)
    # the estimator, with the same folds given as (train, test) pairs
    pairs = [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(3)]
    with pytest.raises(ValueError, match=r"^cross-validation fold 0 of 3 \(its training rows\): .*'v'"):
        LogisticRegressionCV(cv=pairs, path=None, l2=1.0, missing="mean").fit(rows, y)
