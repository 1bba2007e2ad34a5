"""pipeline.LogisticRegression: scikit-learn conventions, check_estimator, Pipeline/GridSearchCV,
dask arrays, and the same coefficients as the CLI."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from conftest import run_cli
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from pipeline.errors import ConvergenceWarning
from pipeline.estimator import LogisticRegression
from pipeline.model import Model

#: checks that cannot apply, with the reason (check_estimator's expected_failed_checks)
NOT_APPLICABLE = {
    "check_sample_weight_equivalence_on_dense_data": (
        "with the defaults (no penalty, ftol=1e-12) the check's 15-row datasets have no finite "
        "optimum or are solved only to ftol, so weighted and repeated fits stop at different "
        "points; with a penalty and tight tolerances it passes (test below)"
    ),
}


def _data(n=400, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * [1.0, 3.0, 0.2, 10.0][:d] + 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-(X[:, 0] - 0.3 * X[:, 1])))).astype(int)
    return X, y


@pytest.mark.slow
def test_passes_check_estimator():
    check_estimator(LogisticRegression(), expected_failed_checks=NOT_APPLICABLE)


def test_sample_weights_equal_repeated_rows_when_the_optimum_is_unique():
    from sklearn.utils.estimator_checks import (
        check_sample_weight_equivalence_on_dense_data,
    )

    # (its data has 3 classes: the multinomial model, L-BFGS only, which stops where the loss's
    # rounding hides its changes; at l2=0.01 that is 1e-7 from the optimum, at 0.1 well within the check)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_sample_weight_equivalence_on_dense_data(
            "LogisticRegression", LogisticRegression(l2=0.1, tol=1e-12, ftol=0.0)
        )


def test_conventions_and_any_two_labels():
    X, y = _data()
    labels = np.array(["no", "yes"])[y]
    model = LogisticRegression(l2=1e-3).fit(X, labels)
    assert list(model.classes_) == ["no", "yes"]
    assert model.coef_.shape == (1, 4) and model.intercept_.shape == (1,)
    assert model.n_iter_.shape == (1,) and model.n_iter_[0] > 0
    proba = model.predict_proba(X)
    assert proba.shape == (400, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(model.predict(X)) <= {"no", "yes"}
    assert model.score(X, labels) > 0.7
    assert model.get_params()["l2"] == 1e-3
    assert model.set_params(l2=0.5).l2 == 0.5


def test_inside_pipeline_and_grid_search():
    X, y = _data()
    search = GridSearchCV(
        Pipeline([("scale", StandardScaler()), ("logit", LogisticRegression())]), {"logit__l2": [1e-3, 1e-1]}, cv=3
    )
    search.fit(X, y)
    assert search.best_params_["logit__l2"] in (1e-3, 1e-1)
    assert search.predict_proba(X).shape == (400, 2)


def test_same_coefficients_as_the_cli_bit_for_bit(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, y = _data(n=1000, d=3, seed=5)
    data = tmp_path / "data"
    data.mkdir()
    for part, rows in enumerate([slice(0, 300), slice(300, 1000)]):
        pq.write_table(
            pa.table({"a": X[rows, 0], "b": X[rows, 1], "c": X[rows, 2], "y": y[rows]}),
            data / f"part-{part}.parquet",
            row_group_size=128,
        )
    result = run_cli(
        "train", data, "--label", "y", "--l2", "0.01", "--in-process", "--out", tmp_path / "out", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    cli = Model.load(tmp_path / "out")
    estimator = LogisticRegression(l2=0.01).fit(X, y)
    assert estimator.coef_.ravel().tobytes() == cli.coef_array.tobytes()
    assert estimator.intercept_[0] == cli.intercept
    loaded = LogisticRegression.from_model(tmp_path / "out")
    assert loaded.coef_.tobytes() == estimator.coef_.tobytes()
    parquet = LogisticRegression(l2=0.01).fit_parquet(data, label="y")
    assert parquet.coef_.tobytes() == estimator.coef_.tobytes()


def test_penalties_must_be_numbers():
    X, y = _data()
    for bad in ("0.1", True, None, -1.0, float("nan")):
        with pytest.raises(ValueError, match="l2"):
            LogisticRegression(l2=bad).fit(X, y)
    assert (
        LogisticRegression(l2=np.float32(0.5)).fit(X, y).coef_.tobytes()
        == LogisticRegression(l2=0.5).fit(X, y).coef_.tobytes()
    )


def test_standardize_must_be_true_or_false():
    """Read by truth, "yes" and None fitted on (un)standardized features silently."""
    X, y = _data()
    for bad in ("yes", None, 1):
        with pytest.raises(ValueError, match=re.escape(f"standardize must be true or false; found {bad!r}")):
            LogisticRegression(standardize=bad).fit(X, y)
    assert (
        LogisticRegression(standardize=np.False_).fit(X, y).coef_.tobytes()
        == LogisticRegression(standardize=False).fit(X, y).coef_.tobytes()
    )


def test_fit_parquet_takes_class_weights_keyed_by_any_labels(tmp_path):
    """A class_weight dict keyed by the label's values (text here), as in
    memory: the same bits as fit() on the same rows; keys that are not the
    classes are refused by name before any training."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, y = _data()
    labels = np.array(["benign", "malignant"])[y]
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "d": X[:, 3], "y": labels}), data / "p.parquet")
    weights = {"benign": 1.0, "malignant": 3.0}
    parquet = LogisticRegression(l2=0.01, class_weight=weights).fit_parquet(str(data), label="y")
    memory = LogisticRegression(l2=0.01, class_weight=weights).fit(X, labels)
    assert parquet.coef_.tobytes() == memory.coef_.tobytes()
    assert parquet.coef_.tobytes() != LogisticRegression(l2=0.01).fit(X, labels).coef_.tobytes()
    for wrong in ({0: 1.0, 1: 3.0}, {"benign": 1.0}):
        with pytest.raises(
            ValueError, match=r"class_weight keys must be the classes of label 'y', \['benign', 'malignant'\]"
        ):
            LogisticRegression(class_weight=wrong).fit_parquet(str(data), label="y")
    # in memory a key that is no class of y is ignored, as scikit-learn does (a
    # cross-validation fold may lack a rare class); a class without a weight is not
    extra = LogisticRegression(l2=0.01, class_weight={**weights, "unseen": 5.0}).fit(X, labels)
    assert extra.coef_.tobytes() == memory.coef_.tobytes()
    with pytest.raises(ValueError, match=r"no weight for class\(es\) \['malignant'\]"):
        LogisticRegression(class_weight={"benign": 1.0}).fit(X, labels)


def test_class_weights_are_checked_like_scikit_learn_checks_them(tmp_path):
    """Strings other than 'balanced' (once read character by character),
    lists, and weights that are not finite and positive (once trained on, to
    coefficients of 1e22) are ValueErrors in fit and fit_parquet alike;
    numpy scalars are weights like any number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, y = _data()
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "y": y}), data / "p.parquet")
    for wrong, words in [
        ("15", "must be None, 'balanced' or a dict"),
        ("Balanced", "must be None, 'balanced' or a dict"),
        ([1.0, 5.0], "must be None, 'balanced' or a dict"),
        ({0: 5.0, 1: -0.1}, "finite positive weights; found {1: -0.1}"),
        ({0: 1.0, 1: math.inf}, "finite positive weights; found {1: inf}"),
        ({0: 1.0, 1: True}, "finite positive weights"),
    ]:
        with pytest.raises(ValueError, match=re.escape(words)):
            LogisticRegression(class_weight=wrong).fit(X[:, :2], y)
        with pytest.raises(ValueError, match=re.escape(words)):
            LogisticRegression(class_weight=wrong).fit_parquet(str(data), label="y")
    numpy_weights = {0: np.int64(1), 1: np.float32(5.0)}
    parquet = LogisticRegression(class_weight=numpy_weights).fit_parquet(str(data), label="y")
    memory = LogisticRegression(class_weight={0: 1.0, 1: 5.0}).fit(X[:, :2], y)
    assert parquet.coef_.tobytes() == memory.coef_.tobytes()


@pytest.mark.parametrize("solver", ["auto", "newton"])
def test_exactly_collinear_features_without_a_penalty_converge(solver):
    """scikit-learn's make_classification has 2 redundant features by
    default: the Hessian is singular, the loss has a minimum. Newton solves
    its step with the diagonal raised (it took a gradient step every
    iteration and ran into max_iter, 100x slower than lbfgs)."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression as Reference

    X, y = make_classification(2000, 10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = LogisticRegression(solver=solver).fit(X, y)
    assert model.n_iter_[0] < 30
    reference = Reference(C=np.inf, tol=1e-12, max_iter=10_000).fit(X, y)

    def loss(fitted):
        p = fitted.predict_proba(X)[:, 1]
        return -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))

    assert abs(loss(model) - loss(reference)) <= 1e-9 * loss(reference)


def test_fit_warns_what_the_data_make_the_settings_do_as_the_command_does():
    from pipeline.errors import DataWarning

    X, y = _data()
    with pytest.warns(DataWarning, match=r"more features \(4\) than rows \(3\)"):
        LogisticRegression(max_iter=5).fit(X[:3], [0, 1, 0])
    labels = np.r_[np.zeros(200, int), np.ones(199, int), [2]]
    with pytest.warns(DataWarning, match=r"label column 'y': 1 of its 3 classes have a single row \(2\)"):
        LogisticRegression(l2=1e-2).fit(X, labels)


def test_fit_warnings_name_the_callers_line_not_the_librarys():
    """ConvergenceWarning, SeparationWarning and the constant-feature
    DataWarning named a line of pipeline/estimator.py (filters by module did
    not apply, and Python's once-per-location rule showed only the first of a
    loop of fits); now the caller's line.  (LogisticRegressionCV's fits run in
    threads of their own, whose stacks end in threading.py: theirs name it.)"""
    from pipeline.errors import DataWarning, SeparationWarning

    X, y = _data()
    X = np.column_stack([X, np.ones(len(y))])  # a constant feature
    separable = (X[:, 0] > 0).astype(int)
    cases = [
        (lambda: LogisticRegression(max_iter=1).fit(X, y), {ConvergenceWarning, DataWarning}),
        (lambda: LogisticRegression().fit(X, separable), {SeparationWarning, DataWarning}),
    ]
    for call, expected in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        shown = {(w.category, w.filename) for w in caught if w.category in expected}
        assert {category for category, _ in shown} == expected
        assert {filename for _, filename in shown} == {__file__}


def test_the_cross_validated_estimator_refuses_what_it_cannot_do(tmp_path):
    """fit_parquet was inherited: a plain fit at the path's first strength
    (all zeros for the lasso), with no cross-validation and no warning."""
    from pipeline.estimator import LogisticRegressionCV

    with pytest.raises(NotImplementedError, match=r"pipeline train DATA --label y --cv 5 --path 4 --l1 1.0 --out DIR"):
        LogisticRegressionCV(path=4).fit_parquet("DATA", label="y")
    # a splitter and no path: "--cv K" (it said "--cv KFold(n_splits=3, ...)" and "--path 1", which the command refuses)
    from sklearn.model_selection import KFold

    with pytest.raises(NotImplementedError, match=r"`pipeline train DATA --label y --cv K --l2 0.5 --out DIR`"):
        LogisticRegressionCV(cv=KFold(3), path=None, l2=0.5).fit_parquet("DATA", label="y")
    with pytest.raises(NotImplementedError, match=r"LogisticRegression.from_model\('m'\)"):
        LogisticRegressionCV.from_model("m")


def test_a_class_weight_key_names_a_class_by_value_or_text():
    from pipeline.train import _names_class

    assert _names_class("spam", "spam") and not _names_class(0, "0") and _names_class(1, 1) and _names_class(True, 1)
    assert _names_class("3", 3) and _names_class("3.0", 3) and not _names_class("3.5", 3)
    assert _names_class("9007199254740993", 9007199254740993)  # (not through a float: 2^53 + 1)
    assert not _names_class("9007199254740992", 9007199254740993)
    assert _names_class("1.1", 1.1) and _names_class(
        "1.1", float(np.float32(1.1)), float32=True
    )  # a float32 label's class
    assert not _names_class("1.1", float(np.float32(1.1)))  # (exact first: 0.7 and float32(0.7) may both be classes)
    assert _names_class("true", 1) and _names_class("False", 0) and not _names_class("1e300", 2.0)


@pytest.mark.cluster
def test_dask_arrays_train_on_the_cluster_to_the_same_bits_and_dask_ml_search_works():
    import dask.array as da
    import dask_ml.model_selection
    from distributed import Client, LocalCluster

    X, y = _data(n=900, d=3, seed=2)
    reference = LogisticRegression(l2=1e-3).fit(X, y)
    with pytest.raises(ValueError, match="expected a Client"):  # (not distributed's bare words)
        LogisticRegression().fit(da.from_array(X, chunks=(250, 3)), da.from_array(y, chunks=(250,)))
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        Xd = da.from_array(X, chunks=(250, 3))
        yd = da.from_array(y, chunks=(250,))
        model = LogisticRegression(l2=1e-3).fit(Xd, yd)
        proba = model.predict_proba(Xd).compute()
        # a negative sample weight is refused, as for numpy input (the CLI's WeightValueError)
        negative = np.ones(900)
        negative[600] = -0.5
        for weights in (negative, da.from_array(negative, chunks=300)):
            with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
                LogisticRegression().fit(Xd if isinstance(weights, da.Array) else X, y, sample_weight=weights)
        # dask-ml's model selection on the dask arrays: each candidate fits in a task
        grid = {"l2": [0.0, 1e-2, 1.0]}
        searched = dask_ml.model_selection.GridSearchCV(LogisticRegression(), grid, cv=3).fit(Xd, yd)
    assert model.coef_.tobytes() == reference.coef_.tobytes()
    assert proba.tobytes() == reference.predict_proba(X).tobytes()
    in_memory = GridSearchCV(LogisticRegression(), grid, cv=3).fit(X, y)
    assert searched.best_params_ == in_memory.best_params_
    for fold in range(3):  # (the means differ in the last bit: dask-ml averages its own way)
        key = f"split{fold}_test_score"
        assert searched.cv_results_[key].tobytes() == in_memory.cv_results_[key].tobytes()
    assert searched.best_estimator_.coef_.tobytes() == in_memory.best_estimator_.coef_.tobytes()


def test_negative_sample_weights_are_refused_in_memory_too():
    """As the CLI refuses them (WeightValueError), in scikit-learn's words."""
    from pipeline import LogisticRegressionCV

    X, y = _data(n=200, d=3, seed=4)
    weights = np.ones(200)
    weights[17] = -0.5
    for estimator in (LogisticRegression(), LogisticRegressionCV(cv=3, path=2)):
        with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
            estimator.fit(X, y, sample_weight=weights)


def test_separated_classes_warn_with_their_own_class():
    from pipeline.errors import SeparationWarning

    X = np.random.default_rng(3).standard_normal((400, 2))
    y = (X[:, 0] > 0).astype(int)
    with pytest.warns(SeparationWarning, match="nearly"):
        LogisticRegression().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeparationWarning)
        LogisticRegression(l2=1e-3).fit(X, y)  # an optimum: no warning


def test_integers_that_float64_rounds_to_one_value_are_said_to_be_so():
    """2**60 + 0..99 is not constant, but it is as float64: the warning says
    why (it called the column constant without a reason)."""
    from pipeline.errors import DataWarning

    rng = np.random.default_rng(3)
    X = np.column_stack([rng.standard_normal(100), (2**60 + np.arange(100)).astype(np.float64)])
    y = (X[:, 0] > 0).astype(int)
    with pytest.warns(DataWarning, match=re.escape("feature number 1 is constant as float64 (integers beyond 2**53")):
        LogisticRegression(l2=0.1).fit(X, y)
