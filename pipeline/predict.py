"""Using a model: batch prediction to Parquet and exact evaluation metrics.

Both run one task per chunk (Parquet row group, canonical order), on a Dask
cluster or in this process, holding one row group at a time, so datasets
larger than memory work.  Probabilities come from :func:`pipeline.kernel.margins`
(a per-row summation order fixed by the number of features; compiled by
:func:`pipeline.fused.margins_fast`, same bits), so a row gets the same bits
however the dataset is split.

Metrics are order-independent: each chunk returns integer counts and a table
of its distinct probabilities with the number of positive and negative rows
at each; the tables are merged by value (sorted), and every metric is then
computed from the merged table in one fixed order (areas under curves as
exact fractions), so the results are the same bits for any partitioning.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import write_atomic
from .config import check_output_root, output_roots
from .data import (
    ChunkSpec,
    Dataset,
    Split,
    SplitPart,
    check_distinct,
    check_workers_can_read,
    dataset_files,
    file_url_path,
    is_glob,
    local_path,
    open_dataset,
    open_parquet,
    split_key_kinds,
    unreadable_error,
)
from .elementary import sigmoid_softplus
from .errors import (
    ColumnNotFoundError,
    ColumnTypeError,
    ConfigError,
    NonFiniteValueError,
    OutputError,
    PipelineError,
)
from .exact import ExactSums
from .kernel import sigmoid, softmax
from .model import DEFAULT_THRESHOLD, Model, predicted_positive
from .outputs import MODEL_FILE, PATH_DIR, OutputDir, data_prefix, lies_within
from .paths import chosen_digest
from .reduce import gather

__all__ = ["CALIBRATION_BINS", "evaluate", "metrics_from_tables", "predict", "split_of"]

PROBA_COLUMN = "proba"
PREDICTION_COLUMN = "prediction"
#: Equal-width probability bins of the calibration table.
CALIBRATION_BINS = 10


def _margin(model: Model, X: np.ndarray, chunk: ChunkSpec, rows: np.ndarray | None = None) -> np.ndarray:
    """``model``'s margins of rows ``X`` of ``chunk`` (``rows``: their rows in
    the row group, where they are a subset).  A margin that is not a number
    (finite values whose terms overflow float64 to +inf and to -inf) has no
    probability: a :class:`NonFiniteValueError` naming the first such row.
    A margin of +inf or -inf (one side overflowing) is a probability's limit:
    a binary model's 1 or 0, a multinomial model's :func:`_class_proba`."""
    margin = model.decision_function(X)  # (numba: imported on first use, not at CLI start)
    bad = np.isnan(margin) if margin.ndim == 1 else np.isnan(margin).any(axis=1)
    _refuse_rows(
        bad,
        chunk,
        rows,
        "a margin (coef . x + intercept) that is not a number: the products of the coefficients and these "
        "values overflow float64 to +inf and to -inf",
    )
    return margin


def _class_proba(margin: np.ndarray, chunk: ChunkSpec, rows: np.ndarray | None = None):
    """:func:`pipeline.kernel.softmax` of a multinomial model's margins; a row
    where two classes' margins overflow to +inf has no probability: a
    :class:`NonFiniteValueError` naming the first such row."""
    with np.errstate(invalid="ignore"):  # (inf - inf at a margin of +inf: its own term, which softmax sets)
        proba, top, log_tail = softmax(margin)
    _refuse_rows(
        np.isnan(proba).any(axis=1),
        chunk,
        rows,
        "no probability: the margins (coef . x + intercept) of two or more classes overflow float64 to +inf",
    )
    return proba, top, log_tail


def _refuse_rows(bad: np.ndarray, chunk: ChunkSpec, rows: np.ndarray | None, what: str) -> None:
    """A :class:`NonFiniteValueError` naming the first of the ``bad`` rows of ``X``, if any."""
    if not bad.any():
        return
    index = int(np.flatnonzero(bad)[0])
    row = index if rows is None else int(rows[index])
    raise NonFiniteValueError(
        f"{int(bad.sum())} row(s) in {chunk.where()} have {what}, first at row {row} of the row group (dataset "
        f"row {chunk.offset + row}); expected values small enough to score (rescale them)",
        path=chunk.path,
        row_group=chunk.row_group,
        rows=(chunk.offset + row, chunk.offset + row + 1),
    )


def open_scored(model: Model, data: str, label: str | None) -> Dataset:
    """``data`` as ``model`` scores it: its columns, missing values read as
    the model was trained (a null where the model imputes none is an error),
    the label (when given) as the codes of the model's classes, if it has any."""
    dataset = open_dataset(
        data,
        label,
        model.columns,
        missing=model.missing,  # type: ignore[arg-type]  # checked when the model was loaded
        nan_as_missing=model.nan_as_missing,
        indicators=model.indicators or [] if model.missing == "indicator" else None,
        vocabularies=model.vocabularies,
    )
    if label is None:
        return dataset
    text = dataset.class_kind == "str"
    where = dataset.files[0] if dataset.files else dataset.url  # (one kind in every file: open_dataset checks)
    if model.classes is None:
        if text:
            raise ColumnTypeError(
                f"label column {label!r} holds text in {where} (and every file of {dataset.url}); "
                "the model's label is 0/1",
                path=where,
                column=label,
            )
        return dataset
    if {isinstance(value, str) for value in model.classes} != {text}:
        raise ColumnTypeError(
            f"label column {label!r} holds {'text' if text else 'numbers'} in {where} (and every file of "
            f"{dataset.url}); the model's classes are {model.classes[:10]}",
            path=where,
            column=label,
        )
    return dataset.with_classes(model.classes)


def score_columns(model: Model, X: np.ndarray, threshold: float, chunk: ChunkSpec) -> dict[str, pa.Array]:
    """The scores of rows ``X``: ``proba`` (of the second class) and
    ``prediction`` (1/0, or the class label when the model has classes); a
    multinomial model's ``proba_<class>`` per class and ``prediction``, the
    most probable class (the first one of a tie)."""
    if model.multinomial:
        proba = _class_proba(_margin(model, X, chunk), chunk)[0]
        columns = {f"{PROBA_COLUMN}_{value}": pa.array(proba[:, k]) for k, value in enumerate(model.class_labels)}
        best = np.argmax(proba, axis=1)
        columns[PREDICTION_COLUMN] = _labels(model, best)
        return columns
    proba = sigmoid(_margin(model, X, chunk))
    positive = predicted_positive(proba, threshold).astype(np.int8)
    prediction = pa.array(positive) if model.classes is None else _labels(model, positive)
    return {PROBA_COLUMN: pa.array(proba), PREDICTION_COLUMN: prediction}


def score_names(model: Model) -> list[str]:
    """The names of :func:`score_columns`' columns, in their order."""
    if model.multinomial:
        return [f"{PROBA_COLUMN}_{value}" for value in model.class_labels] + [PREDICTION_COLUMN]
    return [PROBA_COLUMN, PREDICTION_COLUMN]


def _labels(model: Model, codes: np.ndarray) -> pa.Array:
    """The class labels of ``codes``, as an Arrow column of their type."""
    classes = model.class_labels
    return pa.array([classes[code] for code in codes.tolist()], type=pa.array(classes).type)


# --------------------------------------------------------------------------- prediction


def predict_chunk(
    reader,
    chunk: ChunkSpec,
    index: int,
    model: Model,
    columns: Sequence[str],
    threshold: float,
    directory: str,
    n_chunks: int = 1,
) -> int:
    """Score one row group; write ``directory/part-INDEX.parquet`` (:func:`scores_file_name`); return its rows."""
    data = reader(chunk)
    table = pa.table(score_columns(model, data.X, threshold, chunk))
    if columns:  # the pass-through columns first, then the scores
        try:
            passed = open_parquet(reader.filesystem, chunk.path).read_row_group(chunk.row_group, columns=list(columns))
        except (pa.ArrowException, OSError) as exc:
            raise unreadable_error(chunk, exc) from None
        table = pa.Table.from_arrays(passed.columns + table.columns, names=passed.column_names + table.column_names)
    target = Path(directory) / scores_file_name(index, n_chunks)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_atomic(target, sink.getvalue().to_pybytes())
    return table.num_rows


def predict(
    model_dir: str,
    data: str,
    out: str,
    *,
    columns: Sequence[str] = (),
    threshold: float | None = None,
    client=None,
    overwrite: bool = False,
) -> dict:
    """Score ``data`` with ``model_dir/model.json`` into ``out`` (one file per chunk).

    The files go to a temporary directory next to ``out`` that is renamed
    when every chunk is written: a failure leaves no partial output.
    """
    check_threshold(threshold)
    if client is not None:
        check_workers_can_read(data)
    model_dir = file_url_path(model_dir)  # (a file: URL is its local path)
    model = Model.load(model_dir)
    threshold = binary_threshold(model, threshold)
    dataset = open_scored(model, data, None)
    _check_columns(dataset, columns, model)
    out = local_path(out, "prediction output directory")
    target = Path(out)
    check_output_root(out, output_roots(), "prediction output directory")
    globbed = data_prefix(data) is not None and is_glob(data)
    scored = dataset.files if globbed else ()  # (a local glob's files: the glob itself never "exists")
    check_prediction_target(target, overwrite, inputs=(model_dir, data, *scored))
    OutputDir(target).check_apart_from(data)  # (the scores would be read as part of the data next time)
    if target.is_symlink():  # (--overwrite: the scores replace those of the directory it names; the link stays)
        target = Path(os.path.realpath(target))
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        staging.mkdir(parents=True)
    except OSError as exc:  # a parent that is a file, no permission, ...
        raise OutputError(f"cannot create the output directory {target}: {exc}", path=str(target)) from None
    try:
        reader = dataset.reader
        args = [(chunk, index) for index, chunk in enumerate(dataset.chunks)]
        if client is None:
            rows = [
                predict_chunk(reader, chunk, index, model, tuple(columns), threshold, str(staging), len(args))
                for chunk, index in args
            ]
        else:
            futures = [
                client.submit(
                    predict_chunk,
                    reader,
                    chunk,
                    index,
                    model,
                    tuple(columns),
                    threshold,
                    str(staging),
                    len(args),
                    pure=False,
                )
                for chunk, index in args
            ]
            rows = gather(client, futures)
        try:
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except OSError as exc:
            raise OutputError(
                f"cannot replace the output directory {target} with the scores: {exc}", path=str(target)
            ) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return {"files": len(rows), "rows": sum(rows), "out": str(Path(out))}


def check_threshold(threshold: float | None) -> None:
    """:class:`ConfigError` for a threshold outside [0, 1] (None: the default)."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}", column="threshold")


def binary_threshold(model: Model, threshold: float | None) -> float:
    """The threshold of ``model``'s predictions: ``threshold`` or the default;
    a :class:`ConfigError` for one given with a multinomial model, whose
    prediction is its most probable class (no threshold to apply)."""
    if threshold is None:
        return DEFAULT_THRESHOLD
    if model.multinomial:
        raise ConfigError(
            f"threshold {threshold} applies to a binary model's proba; this model has {model.n_classes} "
            "classes and predicts the most probable one (leave the threshold out)",
            column="threshold",
        )
    return threshold


def check_prediction_target(target: Path, overwrite: bool, inputs: Sequence[str] = ()) -> None:
    """:class:`OutputError` unless ``target`` can take a prediction directory:
    a new path, or with ``overwrite`` an existing directory that is neither
    one of ``inputs`` (the model directory, the data being scored, its
    files) nor a directory holding one of them (it would be deleted before
    it is read)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise OutputError(f"{target} is a file; expected a directory for the scored files", path=str(target))
    if not overwrite:
        raise OutputError(
            f"{target} already exists; expected a new output directory (pass --overwrite to replace it)",
            path=str(target),
        )
    for given in inputs:
        if Path(given).exists() and lies_within(given, target):
            raise OutputError(
                f"{target} is or holds the input {given} (the model directory or the data being scored); "
                "expected another output directory: --overwrite replaces a previous prediction, not an input",
                path=str(target),
            )
    others = _not_scores(target)
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise OutputError(
            f"{target} holds {shown}, which no prediction writes; expected a new path, or with --overwrite a "
            f"directory of earlier scores (only part-NNNNN.parquet files with a {PREDICTION_COLUMN!r} column)",
            path=str(target),
        )


_SCORES_FILE = re.compile(r"part-\d{5,}\.parquet")


def scores_file_name(index: int, n_chunks: int) -> str:
    """``part-00042.parquet``: the chunk's index with at least 5 digits, and as
    many as the last index of ``n_chunks`` has, so that the names sort in
    the rows' order however many chunks there are."""
    return f"part-{index:0{max(5, len(str(n_chunks - 1)))}d}.parquet"


def _not_scores(directory: Path) -> list[str]:
    """The entries of ``directory`` that a prediction does not write: anything
    but ``part-NNNNN.parquet`` files, and such files without a prediction
    column (another dataset's files, named alike).  Empty: earlier scores."""
    others = []
    for entry in sorted(directory.iterdir()):
        if not (entry.is_file() and not entry.is_symlink() and _SCORES_FILE.fullmatch(entry.name)):
            others.append(entry.name + ("/" if entry.is_dir() else ""))
        elif not others:
            try:
                names = pq.read_schema(entry).names
            except (pa.ArrowException, OSError):
                names = []
            if PREDICTION_COLUMN not in names:
                others.append(f"{entry.name} (no {PREDICTION_COLUMN!r} column)")
    return others


def _check_columns(dataset: Dataset, columns: Sequence[str], model: Model) -> None:
    scores = score_names(model)
    for name in columns:
        if name in scores:
            raise ConfigError(
                f"pass-through column {name!r} has the name of a score column the output already has "
                f"({', '.join(scores)}); expected other columns (rename it in the data, or leave it out)",
                column=name,
            )
    for path in dataset.files:
        schema = pq.read_schema(path, filesystem=dataset.filesystem)
        for name in columns:
            if name not in schema.names:
                raise ColumnNotFoundError(
                    f"pass-through column {name!r} not found in {path}; found columns {schema.names}",
                    path=path,
                    column=name,
                )
        check_distinct(schema, path, columns)


# --------------------------------------------------------------------------- evaluation


def evaluate_chunk(reader, chunk: ChunkSpec, model: Model, threshold: float) -> dict:
    """Per-chunk state: distinct probabilities with positive/negative counts, log-loss parts.

    With a split (the reader's weights are then its 0/1 mask), only the rows
    of the split's part count."""
    data = reader(chunk)
    X, y, rows = data.X, data.y, None
    if data.weights is not None:
        rows = np.flatnonzero(data.weights > 0)
        X, y = X[rows], y[rows]
    margin = _margin(model, X, chunk, rows)  # once: the probabilities and the losses both come from it
    if model.multinomial:
        return _class_state(_class_proba(margin, chunk, rows), margin, y, model.n_classes)
    proba, softplus = sigmoid_softplus(margin)
    # stable per-row log-loss log(1 + e^z) - y z (the training loss), summed exactly later
    with np.errstate(invalid="ignore"):  # (0 * inf and inf - inf where a margin is infinite: set below)
        losses = softplus - y * margin
    infinite = np.isinf(margin)
    if infinite.any():  # its limit: 0 on the label's side, +inf on the other (not inf - inf)
        losses[infinite] = np.where((margin[infinite] > 0) == (y[infinite] > 0), 0.0, np.inf)
    values, inverse = np.unique(proba, return_inverse=True)
    positives = np.bincount(inverse, weights=y, minlength=len(values)).astype(np.int64)
    totals = np.bincount(inverse, minlength=len(values)).astype(np.int64)
    return {
        "values": values,
        "positives": positives,
        "negatives": totals - positives,
        "loss": ExactSums.of(losses[:, None]),
    }


def _class_state(softmaxed: tuple, margin: np.ndarray, y: np.ndarray, k: int) -> dict:
    """A multinomial model's per-chunk state: the confusion counts (true class
    by predicted class), per class the table of its distinct probabilities
    with the rows of that class (positives) and the others, and the log-loss
    parts (the training loss, from ``softmaxed``: :func:`_class_proba`)."""
    proba, top, log_tail = softmaxed
    codes = y.astype(np.int64)
    with np.errstate(invalid="ignore"):  # (inf - inf where the label's margin is the one +inf: set below)
        losses = (top - margin[np.arange(codes.shape[0]), codes]) + log_tail
    losses[np.isnan(losses)] = 0.0  # the label's class alone at +inf: probability 1, loss 0
    predicted = np.argmax(proba, axis=1)
    tables = []
    for c in range(k):
        values, inverse = np.unique(proba[:, c], return_inverse=True)
        positives = np.bincount(inverse, weights=codes == c, minlength=len(values)).astype(np.int64)
        totals = np.bincount(inverse, minlength=len(values)).astype(np.int64)
        tables.append({"values": values, "positives": positives, "negatives": totals - positives})
    return {
        "confusion": np.bincount(codes * k + predicted, minlength=k * k).astype(np.int64).reshape(k, k),
        "tables": tables,
        "loss": ExactSums.of(losses[:, None]),
    }


def merge_class_states(states: list[dict], n_classes: int) -> dict:
    """The multinomial states merged: counts added, tables merged by value."""
    return {
        "confusion": sum((s["confusion"] for s in states), np.zeros((n_classes, n_classes), np.int64)),
        "tables": [
            merge_tables([{**s["tables"][c], "loss": ExactSums.zeros(1)} for s in states]) for c in range(n_classes)
        ],
        "loss": _merge_sums([s["loss"] for s in states]),
    }


def class_metrics(merged: dict, classes: Sequence) -> dict:
    """A multinomial model's metrics, exact and in one fixed order: log-loss,
    accuracy, the confusion matrix (rows: true class, columns: predicted),
    per class precision, recall, F1 and one-vs-rest ROC AUC, and their macro
    (over the classes held or predicted) and support-weighted means
    (scikit-learn's definitions; a class without predicted rows has precision
    0, as scikit-learn's ``zero_division=0``)."""
    confusion = merged["confusion"]
    n = int(confusion.sum())
    support = confusion.sum(axis=1).tolist()
    predicted = confusion.sum(axis=0).tolist()
    per_class = []
    for c, value in enumerate(classes):
        tp = int(confusion[c, c])
        precision = Fraction(tp, predicted[c]) if predicted[c] else Fraction(0)
        recall = Fraction(tp, support[c]) if support[c] else Fraction(0)
        f1 = Fraction(2 * tp, support[c] + predicted[c]) if support[c] + predicted[c] else Fraction(0)
        table = merged["tables"][c]
        auc = _auc(table["positives"], table["negatives"])
        per_class.append({"class": value, "support": support[c], "p": precision, "r": recall, "f": f1, "auc": auc})

    # the classes the rows hold or were predicted as (scikit-learn's labels by default: a class neither
    # held nor predicted would add a 0 to the mean, a perfect classifier on a subset scoring below 1)
    seen = [entry for c, entry in enumerate(per_class) if support[c] or predicted[c]]

    def macro(key: str) -> float | None:
        return None if not seen else float(sum((entry[key] for entry in seen), Fraction(0)) / len(seen))

    def weighted(key: str) -> float | None:
        total = sum((entry[key] * entry["support"] for entry in per_class), Fraction(0))
        return None if n == 0 else float(total / n)

    aucs = [entry["auc"] for entry in per_class]
    return {
        "n_samples": n,
        "classes": list(classes),
        "log_loss": None if n == 0 else float(merged["loss"] / n),
        "accuracy": None if n == 0 else float(Fraction(int(np.trace(confusion)), n)),
        "confusion_matrix": confusion.tolist(),
        "per_class": [
            {
                "class": entry["class"],
                "support": entry["support"],
                "precision": float(entry["p"]),
                "recall": float(entry["r"]),
                "f1": float(entry["f"]),
                "roc_auc": None if entry["auc"] is None else float(entry["auc"]),
            }
            for entry in per_class
        ],
        "precision_macro": macro("p"),
        "recall_macro": macro("r"),
        "f1_macro": macro("f"),
        "precision_weighted": weighted("p"),
        "recall_weighted": weighted("r"),
        "f1_weighted": weighted("f"),
        "roc_auc_ovr_macro": None if None in aucs else float(sum(aucs, Fraction(0)) / len(aucs)),
    }


def _auc(pos: np.ndarray, neg: np.ndarray) -> Fraction | None:
    """ROC AUC of a table (probabilities ascending): P(score_pos > score_neg) + 1/2 P(tie), exactly."""
    P, N = int(pos.sum()), int(neg.sum())
    if not P or not N:
        return None
    below = np.concatenate([[0], np.cumsum(neg)[:-1]]).tolist()  # negatives with a lower score
    pairs = sum(int(p) * (2 * int(b) + int(m)) for p, b, m in zip(pos.tolist(), below, neg.tolist()))
    return Fraction(pairs, 2 * P * N)


def merge_tables(states: list[dict]) -> dict:
    values = np.concatenate([s["values"] for s in states]) if states else np.empty(0)
    positives = np.concatenate([s["positives"] for s in states]) if states else np.empty(0, np.int64)
    negatives = np.concatenate([s["negatives"] for s in states]) if states else np.empty(0, np.int64)
    merged, inverse = np.unique(values, return_inverse=True)
    return {
        "values": merged,
        "positives": np.bincount(inverse, weights=positives, minlength=len(merged)).astype(np.int64),
        "negatives": np.bincount(inverse, weights=negatives, minlength=len(merged)).astype(np.int64),
        "loss": _merge_sums([s["loss"] for s in states]),
    }


def _merge_sums(sums: list) -> Fraction | float:
    """The exact total of the per-row losses; +inf where a row's loss is
    (its margin overflowed away from its label's side)."""
    total = ExactSums.zeros(1)
    for part in sums:
        total = total.merge(part)
    value = total.exact_values()[0]
    if value is None:  # (a NaN loss cannot arise: such rows are refused; were one there, NaN it would be)
        return math.nan if total.saw_nan[0] else math.inf
    return value


def metrics_from_tables(table: dict, threshold: float = 0.5) -> dict:
    """Every metric from the merged table (one fixed order: probabilities ascending)."""
    values, pos, neg = table["values"], table["positives"], table["negatives"]
    P, N = int(pos.sum()), int(neg.sum())
    n = P + N
    predicted = predicted_positive(values, threshold)
    tp, fp = int(pos[predicted].sum()), int(neg[predicted].sum())
    fn, tn = P - tp, N - fp

    def ratio(a: int, b: int) -> float | None:
        return None if b == 0 else float(Fraction(a, b))

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    exact_auc = _auc(pos, neg)
    auc = None if exact_auc is None else float(exact_auc)
    # average precision: sum over thresholds (descending) of (R_k - R_{k-1}) P_k
    average_precision = None
    if P:
        acc = Fraction(0)
        tp_k = fp_k = 0
        for p_count, n_count in zip(pos[::-1].tolist(), neg[::-1].tolist()):
            tp_k += p_count
            fp_k += n_count
            if p_count:
                acc += Fraction(p_count, P) * Fraction(tp_k, tp_k + fp_k)
        average_precision = float(acc)
    calibration = []
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    bins = np.minimum(np.searchsorted(edges, values, side="right") - 1, CALIBRATION_BINS - 1)
    for b in range(CALIBRATION_BINS):
        inside = bins == b
        count = int(pos[inside].sum() + neg[inside].sum())
        if count == 0:
            calibration.append(
                {"bin": [float(edges[b]), float(edges[b + 1])], "count": 0, "mean_proba": None, "observed_rate": None}
            )
            continue
        weighted = sum(
            (Fraction(v) * int(c) for v, c in zip(values[inside].tolist(), (pos[inside] + neg[inside]).tolist())),
            Fraction(0),
        )
        calibration.append(
            {
                "bin": [float(edges[b]), float(edges[b + 1])],
                "count": count,
                "mean_proba": float(weighted / count),
                "observed_rate": float(Fraction(int(pos[inside].sum()), count)),
            }
        )
    return {
        "n_samples": n,
        "n_positive": P,
        "n_negative": N,
        "threshold": threshold,
        "log_loss": None if n == 0 else float(table["loss"] / n),
        "accuracy": ratio(tp + tn, n),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": auc,
        "pr_auc": average_precision,
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "calibration": calibration,
        "roc_curve": _roc_points(pos, neg, P, N),
    }


#: Points kept of the ROC curve in metrics.json (for plots).
ROC_POINTS = 200


def _roc_points(pos: np.ndarray, neg: np.ndarray, P: int, N: int) -> dict:
    """(fpr, tpr) at every distinct threshold, descending, thinned to about ROC_POINTS."""
    if not P or not N:
        return {"fpr": [], "tpr": []}
    tpr = np.concatenate([[0], np.cumsum(pos[::-1])]) / P
    fpr = np.concatenate([[0], np.cumsum(neg[::-1])]) / N
    keep = np.unique(np.linspace(0, len(tpr) - 1, min(len(tpr), ROC_POINTS + 1)).round().astype(int))
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}


def evaluate(
    model_dir: str,
    data: str,
    *,
    label: str | None = None,
    threshold: float | None = None,
    client=None,
    split: Split | None = None,
) -> dict:
    """Metrics of ``model_dir``'s model on ``data`` (label column: the model's, or
    ``label``): on every row, or on the rows of ``split``'s part (see :func:`split_of`).
    Unweighted: every row counts once, whatever the model was trained with."""
    check_threshold(threshold)
    if client is not None:
        check_workers_can_read(data)
    model = Model.load(model_dir)
    threshold = binary_threshold(model, threshold)
    dataset = open_scored(model, data, label or model.label).with_split(split)
    reader = dataset.reader
    if client is None:
        states = [evaluate_chunk(reader, chunk, model, threshold) for chunk in dataset.chunks]
    else:
        futures = [
            client.submit(evaluate_chunk, reader, chunk, model, threshold, pure=False) for chunk in dataset.chunks
        ]
        states = gather(client, futures)
    if model.multinomial:
        metrics = class_metrics(merge_class_states(states, model.n_classes), model.class_labels)
    else:
        metrics = metrics_from_tables(merge_tables(states), threshold)
        if model.classes is not None:
            metrics["classes"] = list(model.classes)  # (positive: the second)
    metrics.update(
        model=str(Path(model_dir) / MODEL_FILE),
        data=absolute_url(dataset.url),  # (compared with later evaluations', from any directory)
        label=label or model.label,
        model_digest=model.digest,
        rows=rows_of(split),
    )
    return metrics


def rows_of(split: Split | None) -> str | dict:
    """How a metrics file names the rows it was computed on: ``"all"``, or the part of a split."""
    return "all" if split is None else {"part": split.part, "fraction": split.fraction, "key": split.key}


def absolute_url(url: str) -> str:
    """A local path made absolute (symbolic links resolved; a ``file:`` URL
    is its local path, :func:`pipeline.data.file_url_path`); another URL as it is."""
    url = file_url_path(url)
    return url if "://" in url else os.path.realpath(url)


#: the keys by which a metrics file that :func:`evaluate` wrote is known
METRICS_KEYS = frozenset({"model_digest", "n_samples", "log_loss"})


def check_metrics_target(path: Path, evaluation: dict | None = None, overwrite: bool = False) -> None:
    """:class:`OutputError` unless ``path`` can take ``evaluate``'s metrics: a
    new file in an existing directory, or a metrics file written before
    (which it replaces); never a directory, a model, a job document or data.

    ``evaluation``: the ``model_digest``, ``data``, ``rows``, ``label`` and
    ``threshold`` the new metrics will have; a metrics file of another
    evaluation (the validation metrics training wrote, say) is replaced only
    with ``overwrite``, so that nothing written is lost by accident."""
    if path.is_dir():
        raise OutputError(f"{path} is a directory; expected the path of a metrics file (JSON)", path=str(path))
    if not path.parent.is_dir():
        found = "is a file" if path.parent.exists() else "does not exist"
        raise OutputError(
            f"cannot write {path}: its directory {path.parent} {found}; expected an existing directory",
            path=str(path),
        )
    if not path.exists():
        return
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        document = None
    if not (isinstance(document, dict) and METRICS_KEYS <= document.keys() and "coef" not in document):
        raise OutputError(
            f"{path} already exists and is not a metrics file; expected a new path or a metrics file "
            "that evaluate wrote (it replaces only those)",
            path=str(path),
        )
    if evaluation is None or overwrite:
        return
    same = (
        document.get("model_digest") == evaluation["model_digest"]
        and document.get("data") == absolute_url(evaluation["data"])  # (a relative one stored earlier: not the same)
        and document.get("rows", "all") == evaluation["rows"]
        and document.get("label") == evaluation["label"]  # (none stored earlier: not the same)
        and document.get("threshold") == evaluation.get("threshold")
    )
    if not same:
        rows = document.get("rows", "all")
        described = "all rows" if rows == "all" else f"the {rows.get('part')} part" if isinstance(rows, dict) else rows
        stored = {**document, "rows": rows, "data": document.get("data")}
        now = {**evaluation, "data": absolute_url(evaluation["data"])}
        differ = [
            key for key in ("model_digest", "data", "rows", "label", "threshold") if stored.get(key) != now.get(key)
        ]
        raise OutputError(
            f"{path} holds the metrics of model {document.get('model_digest')} on {document.get('data')} "
            f"({described}; not this evaluation's: its {', '.join(differ)}); expected a new path (--out), "
            "or pass --overwrite to replace them",
            path=str(path),
        )


def split_of(model_dir: str | os.PathLike, part: SplitPart) -> Split:
    """The train/validation split ``model_dir``'s model was trained with (from its
    ``job.json``), seen from ``part`` ("train" or "validation")."""
    if part not in ("train", "validation"):
        raise ConfigError(f"a split part is 'train' or 'validation', got {part!r}")
    outputs, point = training_run(model_dir)
    path = outputs.job
    try:  # only the split's two keys: the model may have moved since (output roots do not apply)
        document = outputs.read_job()
        if document is None or document.config is None:
            raise ValueError("it holds no training configuration" if document else "no such file")
        fraction = document.config.get("data.validation_fraction")
        key = document.config.get("data.validation_key")
        if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))):
            raise ValueError(f"data.validation_fraction is {fraction!r}")
        if key is not None and not isinstance(key, str):
            raise ValueError(f"data.validation_key is {key!r}")
    except (PipelineError, ValueError) as exc:
        raise ConfigError(
            f"{path} cannot be read for the training configuration ({exc}); "
            "evaluating a split needs the training run's job.json",
            path=str(path),
        ) from None
    model = Model.load(model_dir)
    wrote = document.digest if point is None else _point_digest(outputs, point, document.digest)
    if wrote != model.digest:  # a later job's job.json (failed, cancelled, running) beside this model
        theirs = f"the job's: {document.digest}" if point is None else f"its path.json's point {point}: {wrote}"
        raise ConfigError(
            f"{path} is of job {document.job_id} ({document.status}), whose model is not the one in "
            f"{model_dir} (digest {model.digest}; {theirs}); evaluating a split needs the job.json of the "
            "run that wrote the model",
            path=str(path),
        )
    if not fraction:
        raise ConfigError(
            f"the model in {model_dir} was trained without a validation split "
            f"({path}: data.validation_fraction is not set); evaluate all rows, or "
            "train with --validation-fraction",
            path=str(path),
        )
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"{path}: data.validation_fraction {fraction!r} does not describe a split", path=str(path))
    return Split(float(fraction), key, part)


def training_run(model_dir: str | os.PathLike) -> tuple[OutputDir, int | None]:
    """The output directory whose ``job.json`` trained the model in
    ``model_dir``, and which path point it is: ``model_dir`` itself (None),
    or, for a regularization path's point (``RUN/path/NNN``, no job.json of
    its own), the run's directory and ``NNN``."""
    outputs = OutputDir(model_dir)
    resolved = outputs.path.resolve()  # (a link to a point: the point's own run and number)
    if outputs.job.exists() or resolved.parent.name != PATH_DIR or not resolved.name.isdigit():
        return outputs, None
    return OutputDir(resolved.parent.parent), int(resolved.name)


def _point_digest(run: OutputDir, point: int, run_digest: str | None) -> str | None:
    """The digest ``run``'s path.json gives its point ``point`` (None: no
    such point, or a path.json that did not choose the run's model, of
    digest ``run_digest``: another run's)."""
    try:
        document = json.loads(run.path_summary.read_text())
        points = {entry["index"]: entry.get("digest") for entry in document["points"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    chosen = chosen_digest(document)
    return points.get(point) if chosen is not None and chosen == run_digest else None


def check_split_key(model_dir: str | os.PathLike, data: str, split: Split) -> None:
    """A split by key seen on ``data`` must hash its keys as training did: a
    key column of another type there (ids written as float64, or as text)
    puts other rows in each part, and the "validation" metrics would include
    training rows.  Compared with the training data named in ``job.json``
    where it can still be read (else nothing is claimed)."""
    if not split.key:
        return
    document = training_run(model_dir)[0].read_job()
    trained_on = (document.config or {}).get("data.url") if document is not None else None
    if not isinstance(trained_on, str):
        return
    try:
        trained = set(split_key_kinds(*dataset_files(trained_on), split.key)[0].values())
    except (PipelineError, OSError, ValueError):
        return  # (the training data moved or is gone)
    here = split_key_kinds(*dataset_files(data), split.key)[0]
    other = next((path for path, kind in here.items() if trained and kind not in trained), None)
    if other is not None:
        raise ColumnTypeError(
            f"validation key column {split.key!r} holds {here[other]} values in {other}; the model's split was "
            f"drawn from its {', '.join(sorted(trained))} values in {trained_on}: each type hashes apart, so the "
            f"{split.part} part here would hold other rows; expected the key's type at training",
            path=other,
            column=split.key,
        )
