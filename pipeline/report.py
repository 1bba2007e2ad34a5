"""``pipeline report OUTPUT_DIR``: one self-contained HTML page about a training run.

Everything is inline (CSS, plots as base64 PNG), so the file can be mailed or
opened from disk with no network: the loss and gradient-norm curves, the
coefficient table with standardized magnitudes, the metrics of
``metrics.json`` (``pipeline evaluate``) with ROC and calibration plots, and
the job configuration from ``job.json``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import textwrap
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_atomic
from .errors import ModelFileError
from .inference import with_intercept
from .model import Model
from .outputs import PATH_DIR, PATH_FILE, JobDocument, OutputDir
from .paths import chosen_digest

__all__ = ["summary_text", "write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; } td, th { padding: 0.2rem 0.7rem; border: 1px solid #ddd; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-family: monospace; }
.plots img { max-width: 49%; } .muted { color: #777; }
.notice { background: #fff4d6; border-left: 4px solid #d9a400; padding: 6px 10px; }
"""


def _figure_png(draw) -> str:
    # a Figure of its own (no pyplot): rendered by Agg, the global backend untouched
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.4, 3.6), dpi=100)
    axes = figure.subplots()
    draw(axes)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _img(source: str, alt: str) -> str:
    return f'<img src="{source}" alt="{html.escape(alt)}">'


def _magnitude(model: Model) -> tuple[list[float], str, str]:
    """``(scale, column name, note)`` of the coefficients' comparable
    magnitude: ``|coef × std|`` where the fit measured the features' spreads
    (standardized), else ``|coef|`` (a raw fit: no spread is known, and it
    is not comparable across features)."""
    if model.scale is not None:
        return (
            list(model.scale),
            "|coef × std|",
            "|coef × std| is the effect of one standard deviation of the feature, the comparable magnitude",
        )
    return (
        [1.0] * len(model.features),
        "|coef|",
        "a fit on the raw features (not standardized): their spreads were not measured, so the "
        "magnitude shown is |coef|, in each feature's own units (not comparable across features)",
    )


def _level_tables(model: Model, n_dense: int, coef: np.ndarray, heads: list[str]) -> list[str]:
    """A table per categorical column, its levels in order: each level's
    coefficients (``coef``: a row per class, one for a binary model, headed
    ``heads``) and its training rows."""
    parts: list[str] = []
    start = n_dense
    for vocabulary in model.vocabularies:
        names = vocabulary.level_names()
        counts = vocabulary.counts or [None] * vocabulary.size  # (a hashed column's were not counted)
        levels = [
            [name.removeprefix(f"{vocabulary.column}="), *coef[:, start + k].tolist(), count]
            for k, (name, count) in enumerate(zip(names, counts))
        ]
        start += vocabulary.size
        parts += [
            f"<h3>{html.escape(vocabulary.column)} (categorical, {vocabulary.size} levels)</h3>",
            _table(levels, ["level", *heads, "rows"], numeric=set(range(1, len(heads) + 2))),
        ]
    return parts


def _binary_sections(model: Model, metrics: dict | None, directory, n_dense: int) -> list[str]:
    """A binary model's coefficient tables (categorical columns by level) and validation metrics."""
    parts: list[str] = []
    scale, magnitude, note = _magnitude(model)
    rows: list[list[Any]] = sorted(
        (
            [name, coef, abs(coef * s)]
            for name, coef, s in list(zip(model.features, model.coef_array.tolist(), scale))[:n_dense]
        ),
        key=lambda row: -row[2],
    )
    rows.append(["(intercept)", model.intercept, None])
    parts += [
        "<h2>Coefficients</h2>",
        f'<p class="muted">original units; {note}</p>',
        _table(rows, ["feature", "coef", magnitude], numeric={1, 2}),
    ]
    parts += _level_tables(model, n_dense, model.coef_array.reshape(1, -1), ["coef"])

    parts += _inference_section(model)
    parts.append(f"<h2>{metrics_title(metrics)}</h2>")
    if metrics:
        keys = ["n_samples", "threshold", "log_loss", "accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"]
        parts.append(_table([[key, metrics.get(key)] for key in keys], ["metric", "value"], numeric={1}))
        matrix = metrics.get("confusion_matrix", {})
        # the classes by name where the label has them (0 and 1 are then the first and the second)
        named = metrics.get("classes") if isinstance(metrics.get("classes"), list) else None
        negative, positive = (str(named[0]), str(named[1])) if named and len(named) == 2 else ("0", "1")
        parts.append(
            _table(
                [
                    [f"actual {negative}", matrix.get("tn"), matrix.get("fp")],
                    [f"actual {positive}", matrix.get("fn"), matrix.get("tp")],
                ],
                ["", f"predicted {negative}", f"predicted {positive}"],
                numeric={1, 2},
            )
        )
        roc = metrics.get("roc_curve") or {"fpr": [], "tpr": []}
        roc_plot = _figure_png(
            lambda ax: (
                ax.plot(roc["fpr"], roc["tpr"]),
                ax.plot([0, 1], [0, 1], ":"),
                ax.set(
                    title=f"ROC (AUC {_fmt(metrics.get('roc_auc'))})",
                    xlabel="false positive rate",
                    ylabel="true positive rate",
                ),
            )
        )
        bins = [row for row in metrics.get("calibration", []) if row.get("count")]
        calibration_plot = _figure_png(
            lambda ax: (
                ax.plot([b["mean_proba"] for b in bins], [b["observed_rate"] for b in bins], marker="o"),
                ax.plot([0, 1], [0, 1], ":"),
                ax.set(title="calibration", xlabel="mean predicted probability", ylabel="observed rate"),
            )
        )
        parts += [
            '<div class="plots">',
            _img(roc_plot, "ROC curve"),
            _img(calibration_plot, "calibration plot"),
            "</div>",
        ]
        parts.append(_metrics_source(metrics))
    else:
        parts.append(
            '<p class="muted">no metrics of this model here: train with --validation-fraction, '
            f"or run <code>pipeline evaluate {html.escape(str(directory))} DATA</code></p>"
        )
    return parts


def _inference_section(model: Model) -> list[str]:
    """The coefficients' standard errors, z, p-values and intervals, and the
    likelihood statistics (:mod:`pipeline.inference`), when the model has them."""
    inference = model.inference_result
    if inference is None:
        return []
    low_label, high_label = _interval_labels(inference.confidence)
    rows = [
        [row["name"], row["coef"], row["std_err"], row["z"], row["p_value"], row["conf_low"], row["conf_high"]]
        for row in inference.table(model.features)
    ]
    statistics = [[name, value] for name, value in _statistics(model)]
    return [
        f"<h2>Inference ({html.escape(_covariance_name(inference.cov_type))} covariance)</h2>",
        _table(rows, ["feature", "coef", "std err", "z", "P>|z|", low_label, high_label], numeric={1, 2, 3, 4, 5, 6}),
        _table(statistics, ["statistic", "value"], numeric={1}),
    ]


def _interval_labels(confidence: float) -> tuple[str, str]:
    tail = (1.0 - confidence) / 2.0
    return f"[{tail:.3g}", f"{1.0 - tail:.3g}]"


def _covariance_name(cov_type: str) -> str:
    return {"nonrobust": "nonrobust (inverse Hessian)", "hc0": "HC0 (sandwich)"}.get(cov_type, cov_type)


def _statistics(model: Model) -> list[tuple[str, Any]]:
    """The likelihood statistics of a model with inference."""
    inference = model.inference_result
    assert inference is not None
    return [
        ("observations (total weight)", inference.n_obs),
        ("parameters", inference.n_params),
        ("log-likelihood", inference.log_likelihood),
        ("null log-likelihood", inference.null_log_likelihood),
        ("deviance", inference.deviance),
        ("null deviance", inference.null_deviance),
        ("AIC", inference.aic),
        ("BIC", inference.bic),
        ("pseudo R² (McFadden)", inference.pseudo_r2),
    ]


#: width of ``pipeline summary``'s header rules, and of each number column of its table
SUMMARY_WIDTH = 92
SUMMARY_COLUMN = 13


def summary_text(model: Model) -> str:
    """``pipeline summary``: the fit and its coefficient table, shaped like
    statsmodels' and R's summaries (standard errors, z, p-values and
    intervals when the model has inference)."""
    inference = model.inference_result
    rule, thin = "=" * SUMMARY_WIDTH, "-" * SUMMARY_WIDTH
    penalty = ", ".join(f"{name}={value!r}" for name, value in (("l2", model.l2), ("l1", model.l1)) if value) or "none"
    named = not model.multinomial and bool(model.classes)  # (a binary model of named classes: which is 1)
    left = [
        ("label", f"{model.label} (1: {model.class_labels[1]!r})" if named else model.label),
        ("family", f"{model.family} (logit)" if not model.multinomial else "multinomial (softmax)"),
        ("solver", model.solver),
        ("converged", f"{model.converged} ({model.n_iter} iter, {model.n_passes} passes)"),  # fits 42 columns
        ("penalty", penalty),
        ("covariance", "none" if inference is None else _covariance_name(inference.cov_type)),
    ]
    right = [("rows", str(model.n_samples))]
    if inference is not None:
        right += [(name, _fmt(value)) for name, value in _statistics(model)]
    lines = ["Logistic regression".center(SUMMARY_WIDTH), rule]
    for j in range(max(len(left), len(right))):
        a = f"{left[j][0] + ':':<12}{left[j][1]}" if j < len(left) else ""
        b = f"{right[j][0] + ':':<29}{right[j][1]:>14}" if j < len(right) else ""
        lines.append(f"{a[:42]:<43}{b}")
    lines.append(rule)
    names = with_intercept(model.features)
    width = max(12, *(len(name) for name in names[:200])) + 1
    if model.multinomial or inference is None:
        lines.append(f"{'':<{width}}{'coef':>12}")
        lines.append(thin)
        coef = np.column_stack([np.atleast_2d(model.coef_array), np.ravel(model.intercept)])  # (a row per class)
        shown, hidden = _shown_rows(model, coef)
        for k, label in enumerate(model.class_labels if model.multinomial else [None]):
            if model.multinomial:
                lines.append(f"class {label!r}")
            lines += [f"{names[j]:<{width}}{coef[k, j]:>12.6g}" for j in shown]
        lines.append(rule)
        if hidden:
            lines.append(
                f"{hidden} hashed bucket(s) with coefficient 0 in every class (no training row fell there, or the "
                "L1 penalty removed them) not shown"
            )
        if not model.multinomial:
            lines.append("no standard errors: train with --inference nonrobust (or hc0) to get them")
        return "\n".join(lines + _separation_note(model)) + "\n"
    low_label, high_label = _interval_labels(inference.confidence)
    header = ("coef", "std err", "z", "P>|z|", low_label, high_label)
    lines.append(f"{'':<{width}}" + "".join(f"{title:>{SUMMARY_COLUMN}}" for title in header))
    lines.append(thin)
    formats = {"coef": ".6g", "std_err": ".4g", "z": ".3f", "p_value": ".3g", "conf_low": ".6g", "conf_high": ".6g"}
    for row in inference.table(model.features):
        cells = "".join(f"{row[key]:>{SUMMARY_COLUMN}{spec}}" for key, spec in formats.items())
        lines.append(f"{row['name']:<{width}}{cells}")
    lines.append(rule)
    return "\n".join(lines + _separation_note(model)) + "\n"


def _shown_rows(model: Model, coef: np.ndarray) -> tuple[list[int], int]:
    """The rows of ``coef`` (a row per class, a column per feature and the
    intercept) that ``summary`` prints, and how many it leaves out: the hashed
    buckets whose coefficient is 0 in every class (of 2**20 buckets, most)."""
    hide = np.zeros(coef.shape[1], dtype=bool)
    start = coef.shape[1] - 1 - sum(vocabulary.size for vocabulary in model.vocabularies)
    for vocabulary in model.vocabularies:
        buckets = slice(start, start + vocabulary.buckets)
        hide[buckets] = ~coef[:, buckets].any(axis=0)
        start += vocabulary.size
    return np.flatnonzero(~hide).tolist(), int(hide.sum())


def separation_note(model: Model) -> str | None:
    """What ``pipeline summary`` and the report say of a model whose classes
    ended separated (None for the others)."""
    if not model.separated:
        return None
    inference = ", and their standard errors, p-values and intervals do not hold" if model.inference else ""
    return (
        "the classes are (nearly) separated: without a penalty the loss goes to 0 only as the coefficients "
        f"grow without bound, so these are where the solver stopped, not an optimum{inference} (add a "
        "penalty, or remove the features that separate the classes)"
    )


def _separation_note(model: Model) -> list[str]:
    """The note under the summary's table, wrapped to the rule."""
    note = separation_note(model)
    return [] if note is None else textwrap.wrap(f"Note: {note}.", SUMMARY_WIDTH)


def _class_coefficients(model: Model, n_dense: int) -> list[str]:
    """A multinomial model's coefficients: a column per class, the numeric
    features by their largest standardized effect over the classes, then a
    table per categorical column, its levels in order (as a binary model's)."""
    classes = [str(value) for value in model.class_labels]
    scale, magnitude, note = _magnitude(model)
    coef = model.coef_array
    effect = np.abs(coef * np.asarray(scale, dtype=np.float64)).max(axis=0)
    order = [j for j in np.argsort(-effect, kind="stable").tolist() if j < n_dense]
    rows: list[list[Any]] = [[model.features[j], *coef[:, j].tolist(), float(effect[j])] for j in order]
    rows.append(["(intercept)", *model.intercept, None])  # type: ignore[misc]  # (a list: multinomial)
    parts = [
        "<h2>Coefficients</h2>",
        f'<p class="muted">{len(classes)} classes (softmax), original units, centered across the classes; '
        f"the last column is a feature's largest over the classes; {note}</p>",
        _table(rows, ["feature", *classes, f"max {magnitude}"], numeric=set(range(1, len(classes) + 2))),
    ]
    parts += _level_tables(model, n_dense, coef, classes)
    return parts


def _metrics_source(metrics: dict) -> str:
    """The line that says which data and rows the metrics are of."""
    split = metrics.get("rows", "all")
    described = (
        "all rows"
        if split == "all"
        else (
            f"the {split.get('part')} part of the split (validation fraction {split.get('fraction')}, "
            f"by {'key ' + repr(split.get('key')) if split.get('key') else 'row position'})"
        )
    )
    return f'<p class="muted">data: {html.escape(str(metrics.get("data")))}, {html.escape(described)}</p>'


def metrics_title(metrics: dict | None) -> str:
    """The metrics section's heading, from the rows ``metrics.json`` was computed
    on: only the validation part of the training split is "validation"."""
    rows = (metrics or {}).get("rows", "all")
    if isinstance(rows, dict) and rows.get("part") == "validation":
        return "Validation metrics"
    if isinstance(rows, dict) and rows.get("part") == "train":
        return "Metrics on the training part of the split"
    return "Metrics"


def _class_metrics(metrics: dict | None) -> list[str]:
    """A multinomial model's validation metrics: the summary, per class, the confusion matrix."""
    parts = [f"<h2>{metrics_title(metrics)}</h2>"]
    if not metrics or "per_class" not in metrics:
        return parts + ['<p class="muted">none: run <code>pipeline evaluate</code> to add them</p>']
    keys = ["n_samples", "log_loss", "accuracy", "f1_macro", "f1_weighted", "roc_auc_ovr_macro"]
    parts.append(_metrics_source(metrics))
    parts.append(_table([[key, metrics.get(key)] for key in keys], ["metric", "value"], numeric={1}))
    per_class = [
        [str(row["class"]), row["support"], row["precision"], row["recall"], row["f1"], row["roc_auc"]]
        for row in metrics["per_class"]
    ]
    parts.append(
        _table(per_class, ["class", "rows", "precision", "recall", "f1", "roc auc (ovr)"], numeric={1, 2, 3, 4, 5})
    )
    classes = [str(value) for value in metrics["classes"]]
    matrix = [[f"actual {value}", *row] for value, row in zip(classes, metrics["confusion_matrix"])]
    parts.append(
        _table(matrix, ["", *(f"predicted {value}" for value in classes)], numeric=set(range(1, len(classes) + 1)))
    )
    return parts


def _table(rows: Sequence[Sequence[Any]], header: list[str], numeric: AbstractSet[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{html.escape(_fmt(cell))}</td>' if i in numeric else f"<td>{html.escape(_fmt(cell))}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "–"
    return str(value)


def write_report(out: str) -> Path:
    """Write ``out/report.html`` and return its path."""
    outputs = OutputDir(out)
    directory = outputs.path
    model = Model.load(directory)
    found = _optional_json(outputs.job, _check_job)
    job = JobDocument.from_json(found) if found else JobDocument()
    note = separation_note(model)
    notices = [] if note is None else [note[0].upper() + note[1:]]
    if found and job.digest != model.digest:
        # a later run (failed, cancelled or still running: --overwrite keeps
        # the model until a new one replaces it) is not this model's run
        notices.append(
            f"job.json belongs to job {job.job_id} ({job.status}), which did not write this model.json: "
            "the report shows the model alone (its run's status, configuration and metrics are not known)"
        )
        job = JobDocument()
    metrics = _optional_json(outputs.metrics, _check_metrics)
    if metrics.get("model_digest", model.digest) != model.digest:
        notices.append("metrics.json is of another model (its model_digest differs): left out")
        metrics = {}  # (as without the file)
    elif metrics and ("per_class" in metrics) != model.multinomial:
        shape = "a multinomial model's (per_class)" if "per_class" in metrics else "a binary model's (no per_class)"
        raise ModelFileError(
            f"{outputs.metrics}: expected the metrics of this {'multinomial' if model.multinomial else 'binary'} "
            f"model (written by pipeline evaluate); found {shape}",
            path=str(outputs.metrics),
        )
    title = f"Training report: {job.name or directory.name}"
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">{html.escape(str(directory.absolute()))} · digest <code>{model.digest}</code></p>',
        *(f'<p class="notice"><strong>Note:</strong> {html.escape(notice)}</p>' for notice in notices),
    ]

    positive = not model.multinomial and bool(model.classes)  # (a binary model of named classes)
    weighted = model.weight is not None or model.class_weight is not None
    path = _chosen_path(outputs, model.digest)
    validation_row: list[list[Any]] = []  # (no validation part: no row for its loss)
    if model.validation_loss is not None:
        loss = "final validation loss" if model.restored_iteration is None else "validation loss (restored iteration)"
        # (the objective's: with the training's row and class weights, where the metrics count each row once)
        weighting = " (weighted as in training; the metrics are not)" if weighted else ""
        validation_row = [[loss + weighting, model.validation_loss]]
    summary: list[list[Any]] = [
        ["status", job.status or "–"],
        ["solver", model.solver],
        ["converged", model.converged],
        ["message", model.message],
        ["iterations", model.n_iter],
        ["passes over the data", model.n_passes],
        ["rows", model.n_samples],
        *([["positive class", f"{model.class_labels[1]!r} (negative {model.class_labels[0]!r})"]] if positive else []),
        *([["restored iteration", model.restored_iteration]] if model.restored_iteration is not None else []),
        ["final loss" if model.restored_iteration is None else "loss (restored iteration)", model.loss],
        *_cv_rows(path),
        *validation_row,
        ["l2", model.l2],
        ["l1", model.l1],
        ["started", job.started_at],
        ["ended", job.ended_at],
    ]
    parts += ["<h2>Summary</h2>", _table(summary, ["", "value"])]

    iterations = list(range(len(model.loss_history)))
    validation = model.validation_loss_history or []

    def draw_loss(ax) -> None:
        ax.plot(iterations, model.loss_history, marker=".", label="training (with penalty)")
        if validation:
            ax.plot(range(len(validation)), validation, marker=".", label="validation")
            ax.legend()
        ax.set(title="loss", xlabel="iteration")

    loss_plot = _figure_png(draw_loss)
    norms = [n if n > 0 else float("nan") for n in model.grad_norm_history]
    norm_plot = _figure_png(
        lambda ax: (
            ax.semilogy(iterations, norms, marker=".", color="tab:green"),
            ax.set(title="projected gradient |g|_inf", xlabel="iteration"),
        )
    )
    parts += [
        "<h2>Convergence</h2>",
        '<div class="plots">',
        _img(loss_plot, "loss curve"),
        _img(norm_plot, "gradient norm curve"),
        "</div>",
    ]

    vocabularies = model.vocabularies
    n_dense = len(model.features) - sum(vocabulary.size for vocabulary in vocabularies)
    if model.multinomial:
        parts += _class_coefficients(model, n_dense) + _class_metrics(metrics)
    else:
        parts += _binary_sections(model, metrics, directory, n_dense)

    parts += _path_section(outputs, path)
    config = job.config or {}
    parts += [
        "<h2>Configuration</h2>",
        _table([[key, json.dumps(value)] for key, value in config.items()], ["key", "value"]),
    ]
    versions = job.versions or {}
    if versions:
        parts.append(_table([[k, v] for k, v in versions.items()], ["library", "version"]))
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    target = outputs.report
    with outputs.writing():
        write_atomic(target, page.encode())
    return target


def _chosen_path(outputs: OutputDir, digest: str) -> dict:
    """``path/path.json`` where its path chose the model of ``digest``, else {}
    (no path, or a replacing run stopped on its way: its path beside the model
    it did not replace); :class:`ModelFileError` if the file is unusable."""
    document = _optional_json(outputs.path_summary, _check_path)
    return document if document and chosen_digest(document) == digest else {}


def path_text(out: str | Path, digest: str) -> str:
    """``pipeline summary``'s table of a regularization path (or a
    cross-validation) in ``out/path/path.json`` that chose the model of
    ``digest``: each point's strength, nonzero weights, training loss, held-out
    or cross-validation loss, passes and convergence, the chosen one marked;
    empty where there is none (a run without ``--path`` or ``--cv``, or a path
    that did not choose this model)."""
    try:
        document = _chosen_path(OutputDir(out), digest)
    except ModelFileError as exc:  # (the model's own table stands: the path's is left out, saying why)
        return f"\n{PATH_DIR}/{PATH_FILE} not shown: {exc}\n"
    if not document:
        return ""
    points, chosen = document["points"], document["chosen"]
    cv = all(point.get("cv_loss") is not None for point in points)
    held_out = all(point["validation_loss"] is not None for point in points)
    header = ["", "strength", "l2", "l1", "nonzero", "train loss"]
    header += ["cv loss", "cv std"] if cv else ["validation"] if held_out else []
    header += ["passes", "converged"]
    rows = []
    for point in points:
        row = [
            f"{PATH_DIR}/{point['index']:03d}" + (" *" if point["index"] == chosen else ""),
            f"{point['strength']:.4g}",
            f"{point['l2']:.4g}",
            f"{point['l1']:.4g}",
            str(point["n_nonzero"]),
            f"{point['loss']:.6g}",
        ]
        row += [f"{point['cv_loss']:.6g}", f"{point['cv_std']:.3g}"] if cv else []
        row += [f"{point['validation_loss']:.6g}"] if held_out and not cv else []
        rows.append([*row, str(point["n_passes"]), "yes" if point["converged"] else "NO"])
    widths = [max(len(cells[k]) for cells in [header, *rows]) for k in range(len(header))]
    what = "Cross-validation" if cv and len(points) == 1 else f"Regularization path of {len(points)} strengths"
    lines = ["", f"{what} ({PATH_DIR}/{PATH_FILE}): * chosen, {document.get('rule')}"]
    for cells in [header, *rows]:
        lines.append(
            "  ".join(f"{cell:<{widths[0]}}" if k == 0 else f"{cell:>{widths[k]}}" for k, cell in enumerate(cells))
        )
    return "\n".join(lines) + "\n"


def _cv_rows(document: dict) -> list[list[Any]]:
    """The summary's rows for the cross-validation of :func:`_chosen_path`'s
    ``document`` (none without one): its mean held-out loss and the spread
    over the folds."""
    if not document:
        return []
    point = document["points"][document["chosen"]]
    if point.get("cv_loss") is None:
        return []
    folds = len(point.get("cv_losses") or [])
    return [
        [f"cross-validation loss (mean of {folds} folds' held-out losses)", point["cv_loss"]],
        ["its std", point["cv_std"]],
    ]


def _path_section(outputs: OutputDir, document: dict) -> list[str]:
    """A regularization path's points (:func:`_chosen_path`'s ``document``;
    none without one), its coefficient paths (standardized magnitudes,
    ``coef × std``) and its losses against the strength."""
    if not document:
        return []
    points = document["points"]
    models = [Model.load(outputs.path_point(point["index"])) for point in points]
    grid = [point["strength"] for point in points]
    chosen = document.get("chosen")
    paths, shown = coefficient_paths(models)

    def draw_coefficients(ax) -> None:
        for j in range(paths.shape[1]):
            ax.plot(grid[: len(paths)], paths[:, j], label=models[0].features[j] if j < 10 else None)
        if 0 < paths.shape[1] <= 10:
            ax.legend(fontsize="small")
        if isinstance(chosen, int) and 0 <= chosen < len(grid):
            ax.axvline(grid[chosen], linestyle=":", color="gray")
        ax.set(xscale="log", title=f"coefficient paths ({shown})", xlabel="penalty strength")

    def draw_losses(ax) -> None:
        ax.plot(grid, [point["loss"] for point in points], marker=".", label="training (with penalty)")
        held_out = [point["validation_loss"] for point in points]
        if all(value is not None for value in held_out):
            ax.plot(grid, held_out, marker=".", label="validation")
        if all(point.get("cv_loss") is not None for point in points):
            means = [point["cv_loss"] for point in points]
            ax.errorbar(grid, means, yerr=[point["cv_std"] for point in points], marker=".", label="cross-validation")
        if isinstance(chosen, int) and 0 <= chosen < len(grid):
            ax.axvline(grid[chosen], linestyle=":", color="gray")
        ax.legend()
        ax.set(xscale="log", title="loss along the path", xlabel="penalty strength")

    keys = ["index", "strength", "l2", "l1", "n_nonzero", "loss", "validation_loss", "n_passes", "converged"]
    if all(point.get("cv_loss") is not None for point in points):
        keys = [*keys[:7], "cv_loss", "cv_std", *keys[7:]]
    return [
        "<h2>Regularization path</h2>",
        f'<p class="muted">alpha {_fmt(document.get("alpha"))}; model '
        + (f"{PATH_DIR}/{chosen:03d}" if isinstance(chosen, int) else _fmt(chosen))
        + f" chosen ({html.escape(str(document.get('rule')))}); every model in path/NNN/model.json</p>",
        '<div class="plots">',
        _img(_figure_png(draw_coefficients), "coefficient paths"),
        _img(_figure_png(draw_losses), "loss along the path"),
        "</div>",
        _table([[point.get(key) for key in keys] for point in points], keys, numeric=set(range(1, len(keys) - 1))),
    ]


def coefficient_paths(models: list[Model]) -> tuple[np.ndarray, str]:
    """``(paths, what)``: a row per path point and a column per feature of
    the coefficients' comparable magnitude (:func:`_magnitude`'s scale): a
    binary model's ``coef × std``, a multinomial model's Euclidean norm of
    its classes' ``coef × std`` (a feature's whole effect: 0 where the
    penalty removed it from every class), and what they are in words."""
    if not models:
        return np.zeros((0, 0)), "coef × std"
    spreads, column, _ = _magnitude(models[0])
    scale = np.array(spreads)
    unit, raw = column.strip("|"), "" if models[0].scale is not None else ", raw features"
    if models[0].multinomial:
        paths = np.array([np.linalg.norm(model.coef_array * scale, axis=0) for model in models])
        return paths, f"‖{unit}‖ over the classes{raw}"
    return np.array([model.coef_array * scale for model in models]), unit + raw


def _check_path(document) -> str | None:
    if not isinstance(document, dict):
        return f"expected a JSON object, found {_kind(document)}"
    points = document.get("points")
    if not isinstance(points, list) or not all(isinstance(point, dict) for point in points):
        return "expected 'points', a list of objects"
    needed = {"index", "strength", "l2", "l1", "loss", "validation_loss", "n_nonzero", "n_passes", "converged"}
    for point in points:
        if not needed <= set(point) or not isinstance(point["index"], int) or not _is_number(point["strength"]):
            return f"expected each point to have {sorted(needed)}"
        for name in ("l2", "l1", "loss"):
            if not _is_number(point[name]):
                return f"expected point {point['index']}'s {name!r} to be a number, found {_kind(point[name])}"
        for name in ("validation_loss", "cv_loss", "cv_std"):
            if point.get(name) is not None and not _is_number(point[name]):
                return f"expected point {point['index']}'s {name!r} to be a number or null, found {_kind(point[name])}"
        if point.get("cv_loss") is not None and point.get("cv_std") is None:
            return f"expected point {point['index']} to have 'cv_std' with its 'cv_loss'"
    return None


def _optional_json(path: Path, check) -> dict:
    """The JSON object in ``path`` ({} if there is no such file), checked by
    ``check``; :class:`ModelFileError` naming the file if it cannot be used."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot be read: {exc}", path=str(path)) from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ModelFileError(
            f"{path}: not JSON ({exc}); expected the JSON object a run writes", path=str(path)
        ) from None
    problem = check(document)
    if problem:
        raise ModelFileError(f"{path}: {problem}", path=str(path))
    return document


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_job(job) -> str | None:
    """What is wrong with ``job.json`` for the report (None: nothing)."""
    try:
        JobDocument.from_json(job)
    except ValueError as exc:
        return str(exc)
    return None


_KIND_NAMES = {dict: "an object", list: "a list"}
#: characters of a wrong value quoted in an error message
SHOWN_CHARS = 80


def _check_class_metrics(metrics: dict) -> str | None:
    """What is wrong with a multinomial model's ``metrics.json`` (None: nothing)."""
    classes, matrix, rows = metrics.get("classes"), metrics.get("confusion_matrix"), metrics.get("per_class")
    k = len(classes) if isinstance(classes, list) else -1
    if not (
        k >= 2
        and isinstance(matrix, list)
        and len(matrix) == k
        and all(isinstance(row, list) and len(row) == k and all(isinstance(v, int) for v in row) for row in matrix)
    ):
        return "expected classes (a list) and confusion_matrix, a list of one list of counts per class"
    keys = ("support", "precision", "recall", "f1")
    if not (
        isinstance(rows, list)
        and len(rows) == k
        and all(isinstance(row, dict) and all(_is_number(row.get(key)) for key in keys) for row in rows)
    ):
        return f"expected per_class to hold an object per class with numbers {', '.join(keys)}"
    return None


def _check_metrics(metrics) -> str | None:
    """What is wrong with ``metrics.json`` for the report (None: nothing)."""
    if not isinstance(metrics, dict):
        return f"expected a JSON object (written by pipeline evaluate), found {_kind(metrics)}"
    if "per_class" in metrics:  # a multinomial model's
        return _check_class_metrics(metrics)
    for key, kind in (("confusion_matrix", dict), ("roc_curve", dict), ("calibration", list)):
        if key in metrics and not isinstance(metrics[key], kind):
            return f"expected {key} to be {_KIND_NAMES[kind]}, found {_kind(metrics[key])}"
    if metrics.get("rows", "all") != "all" and not isinstance(metrics["rows"], dict):
        return f'expected rows to be "all" or an object, found {json.dumps(metrics["rows"])[:SHOWN_CHARS]}'
    roc = metrics.get("roc_curve") or {"fpr": [], "tpr": []}
    fpr, tpr = roc.get("fpr"), roc.get("tpr")
    if not (
        isinstance(fpr, list) and isinstance(tpr, list) and len(fpr) == len(tpr) and all(map(_is_number, fpr + tpr))
    ):
        return "expected roc_curve to hold lists fpr and tpr of numbers, of one length"
    for row in metrics.get("calibration", []):
        if not (
            isinstance(row, dict)
            and isinstance(row.get("count"), int)
            and (not row["count"] or (_is_number(row.get("mean_proba")) and _is_number(row.get("observed_rate"))))
        ):
            return (
                "expected each calibration row to be an object with an integer count and, when "
                f"the count is not 0, numbers mean_proba and observed_rate; found {json.dumps(row)[:SHOWN_CHARS]}"
            )
    return None
