"""Coefficient inference at the optimum of a binary fit: the covariance of
the coefficients, their standard errors, z-values, p-values and confidence
intervals, and the likelihood statistics (log-likelihood, null
log-likelihood, deviance, AIC, BIC, McFadden's pseudo-R²).

Everything comes from exact passes over the data at two points, so it is
the same for any partitioning and worker count:

* at the optimum, one Hessian pass: the log-likelihood ``-sum_i s_i l_i``
  and the observed information ``H = sum_i s_i h_i (1 - h_i) a_i a_i^T``
  (``a_i = [x~_i, 1]``, in the solver's standardized coordinates), plus the
  L2 penalty's curvature ``S l2 / scale_j**2`` on each weight; the
  model-based (``nonrobust``) covariance is ``H^-1``;
* with ``hc0``, one more pass of the same shape: the outer products of the
  per-row scores ``M = sum_i s_i r_i^2 a_i a_i^T`` (:attr:`KernelSpec.scores`:
  ``s_i`` copies of a row's score, as repeated rows give),
  and the sandwich ``H^-1 M H^-1`` (White's HC0, statsmodels'
  ``cov_type="HC0"``);
* at ``coef = 0``, one loss pass: its intercept gradient ``sum_i s_i (1/2 - y_i)``
  gives the weighted share ``p`` of label 1 and the null (intercept-only)
  model's log-likelihood ``S (p log p + (1 - p) log(1 - p))``.

The covariance is mapped to original units through the standardization
(``w = beta / scale``, ``b = b~ - center . w``); the factorization, the
inverse and every product are :func:`math.fsum` inner products
(:func:`pipeline.solvers.cholesky_factor`), so the result depends only on
the exact sums, not on the BLAS or the CPU.  Sample weights count as
frequency weights (``n`` is their total).  With an L2 penalty, ``H``
includes the penalty's curvature: the covariance is that of the penalized
likelihood's normal approximation (the posterior of a Gaussian prior), and
its p-values are approximate; an L1 penalty has no such Hessian and is
refused, as are the multinomial model and categorical columns (whose
second-order pass is not built).  A singular ``H`` is refused with the
collinear columns named.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .errors import CollinearityError, ConfigError, SeparationError, SeparationWarning, invalid
from .exact import fsum
from .kernel import KernelSpec
from .objective import Evaluator, Penalty, Standardization
from .solvers import cholesky_combination, cholesky_factor, cholesky_inverse, cholesky_solve

__all__ = [
    "COV_TYPES",
    "DEFAULT_CONFIDENCE",
    "Inference",
    "Inferred",
    "check_inference",
    "infer",
]

#: ``nonrobust``: the inverse observed information; ``hc0``: the sandwich
COV_TYPES = ("nonrobust", "hc0")
#: the confidence level of the intervals unless asked otherwise
DEFAULT_CONFIDENCE = 0.95
#: a column whose Cholesky pivot is at most this share of its own Hessian
#: diagonal -- one minus the R² of the column on the ones before it, in the
#: curvature's weighting -- is (numerically) a combination of them
COLLINEAR_PIVOT_RATIO = 1e-10
#: the columns named in a collinear combination: those whose coefficient in
#: it is at least this share of the largest one's
COLLINEAR_SHARE = 1e-6
#: Newton steps :func:`infer` takes at most from the solver's solution
MAX_NEWTON_STEPS = 3
#: a Newton step that moves no coefficient by more than this share of the
#: largest one (or of 1) is not taken: the optimum is reached to rounding
NEGLIGIBLE_STEP = 1e-13
#: a Newton step is taken only if the objective rises by no more than this
#: share of it (rounding: near the optimum its change is below what the sum resolves)
OBJECTIVE_ROUNDING = 1e-12
#: McFadden's pseudo-R2 above which the classes are taken as (nearly)
#: separated: the log-likelihood within a millionth of its supremum 0
SEPARATED_R2 = 1.0 - 1e-6
#: the name of the intercept in the tables
INTERCEPT = "intercept"


def with_intercept(names: Sequence[str]) -> list[str]:
    """``names`` and the intercept's name: :data:`INTERCEPT`, or
    ``(intercept)`` where a feature has that name (two rows were called so)."""
    return [*names, f"({INTERCEPT})" if INTERCEPT in names else INTERCEPT]


@dataclass(frozen=True, eq=False)
class Inference:
    """Inference on the coefficients ``coef`` (original units, intercept last)."""

    coef: np.ndarray
    #: ``(d + 1, d + 1)``, original units, intercept last
    covariance: np.ndarray
    cov_type: str
    confidence: float
    log_likelihood: float
    null_log_likelihood: float
    #: the number of observations: the total sample weight (the training rows when unweighted)
    n_obs: float

    @property
    def std_err(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))

    @property
    def z(self) -> np.ndarray:
        return self.coef / self.std_err

    @property
    def p_value(self) -> np.ndarray:
        """Two-sided, under the normal approximation: ``erfc(|z| / sqrt 2)``."""
        return np.array([math.erfc(abs(value) / math.sqrt(2.0)) for value in self.z.tolist()])

    @property
    def critical_value(self) -> float:
        """The normal quantile of ``1 - (1 - confidence) / 2``."""
        return NormalDist().inv_cdf(1.0 - (1.0 - self.confidence) / 2.0)

    @property
    def conf_int(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)``: ``coef -/+ critical_value * std_err``."""
        half = self.critical_value * self.std_err
        return self.coef - half, self.coef + half

    @property
    def n_params(self) -> int:
        return int(self.coef.shape[0])

    @property
    def deviance(self) -> float:
        return -2.0 * self.log_likelihood

    @property
    def null_deviance(self) -> float:
        return -2.0 * self.null_log_likelihood

    @property
    def aic(self) -> float:
        return self.deviance + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return self.deviance + math.log(self.n_obs) * self.n_params

    @property
    def pseudo_r2(self) -> float:
        """McFadden's: ``1 - llf / llnull``."""
        return 1.0 - self.log_likelihood / self.null_log_likelihood

    def to_json(self) -> dict:
        """``model.json``'s ``inference``: the inputs, then what follows from them
        (for readers of the file; :meth:`from_json` recomputes it)."""
        low, high = self.conf_int
        return {
            "cov_type": self.cov_type,
            "confidence": self.confidence,
            "log_likelihood": self.log_likelihood,
            "null_log_likelihood": self.null_log_likelihood,
            "n_obs": self.n_obs,
            "covariance": self.covariance.tolist(),
            "std_err": self.std_err.tolist(),
            "z": self.z.tolist(),
            "p_value": self.p_value.tolist(),
            "conf_low": low.tolist(),
            "conf_high": high.tolist(),
            "deviance": self.deviance,
            "null_deviance": self.null_deviance,
            "aic": self.aic,
            "bic": self.bic,
            "pseudo_r2": self.pseudo_r2,
        }

    @classmethod
    def from_json(cls, document: dict, coef: np.ndarray, where: str = "inference") -> Inference:
        """The inference of :meth:`to_json` for the model's ``coef`` (intercept
        last); ValueError saying what is wrong when a key is missing, unknown
        or not what :meth:`to_json` writes."""
        expected = set(cls(coef, np.eye(coef.shape[0]), "nonrobust", 0.5, -1.0, -1.0, 1.0).to_json())
        if set(document) != expected:
            raise ValueError(f"{where}: expected the keys {sorted(expected)}; found {sorted(document)}")
        n = coef.shape[0]
        try:
            covariance = np.array(document["covariance"], dtype=np.float64)
            keys = ("confidence", "log_likelihood", "null_log_likelihood", "n_obs")
            if any(isinstance(document[key], (bool, str)) for key in keys):
                raise TypeError("a number was expected")
            values = {key: float(document[key]) for key in keys}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: not numbers ({exc})") from None
        if covariance.shape != (n, n) or document["cov_type"] not in COV_TYPES:
            raise ValueError(
                f"{where}: expected cov_type one of {list(COV_TYPES)} and a {n} x {n} covariance "
                f"(the features and the intercept); found {document['cov_type']!r} and shape {covariance.shape}"
            )
        if not (np.isfinite(covariance).all() and (np.diag(covariance) >= 0).all()):
            raise ValueError(f"{where}: expected a finite covariance with a non-negative diagonal")
        if not isinstance(document["confidence"], float) or not 0.0 < values["confidence"] < 1.0:
            raise ValueError(f"{where}: expected confidence a number in (0, 1); found {document['confidence']!r}")
        if not (values["n_obs"] > 0 and math.isfinite(values["n_obs"])):
            raise ValueError(f"{where}: expected n_obs a positive number; found {document['n_obs']!r}")
        if not (values["null_log_likelihood"] < 0 and values["log_likelihood"] <= 0):
            raise ValueError(
                f"{where}: expected log-likelihoods <= 0 (the null one < 0); found {document['log_likelihood']!r} "
                f"and {document['null_log_likelihood']!r}"
            )
        return cls(coef, covariance, document["cov_type"], **values)

    def table(self, names: Sequence[str]) -> list[dict]:
        """One row per coefficient (``names``, then the intercept): coef, std err,
        z, p-value and the interval."""
        low, high = self.conf_int
        columns = (self.coef, self.std_err, self.z, self.p_value, low, high)
        keys = ("coef", "std_err", "z", "p_value", "conf_low", "conf_high")
        return [
            {"name": name, **{key: float(column[j]) for key, column in zip(keys, columns)}}
            for j, name in enumerate(with_intercept(names))
        ]


def check_inference(cov_type: str | None, confidence: float) -> None:
    """The options of :func:`infer`, checked before any pass."""
    if cov_type is not None and cov_type not in COV_TYPES:
        raise invalid("inference", f"one of {list(COV_TYPES)}", cov_type)
    if isinstance(confidence, bool) or not (isinstance(confidence, numbers.Real) and 0.0 < confidence < 1.0):
        raise invalid("confidence", "a number strictly between 0 and 1", confidence)


def refusal(*, l1: float, n_classes: int, categorical: bool | Sequence[str], class_weight: bool = False) -> str | None:
    """Why inference has no meaning for such a fit (None: it has one;
    ``categorical``: whether it has categorical columns, or their names)."""
    if l1 > 0:
        return (
            f"coefficient inference needs a smooth objective; found an L1 penalty (l1={l1!r}), whose "
            "optimum has no Hessian (fit without --l1, or with --l2 only)"
        )
    if n_classes:
        return f"coefficient inference is for the binary model; found a multinomial one ({n_classes} classes)"
    if categorical:
        named = f" {list(categorical)}" if not isinstance(categorical, bool) else ""
        return f"coefficient inference takes numeric features only; found categorical columns{named}"
    if class_weight:
        return (
            "coefficient inference needs the likelihood of the rows as they are; found class weights, which "
            "reweigh it (fit without --class-weight; a weight column counts as frequency weights)"
        )
    return None


@dataclass(frozen=True, eq=False)
class Inferred:
    """What :func:`infer` gives: the inference, the optimum it polished to
    (solver coordinates) with the penalized mean gradient there, and the
    passes it took."""

    inference: Inference
    solver_coef: np.ndarray
    solver_grad: np.ndarray
    newton_steps: int
    n_passes: int


@dataclass(frozen=True, eq=False)
class _SecondOrder:
    """The sums of one Hessian pass, the penalty's terms added (sum form)."""

    loss_sum: float  # the data's: minus the log-likelihood
    objective: float  # plus the penalty
    grad: np.ndarray
    hessian: np.ndarray
    weight_sum: float


def _second_order(evaluator: Evaluator, spec: KernelSpec, coef: np.ndarray, penalty: Penalty, scale) -> _SecondOrder:
    partials = evaluator.partials(coef, spec.with_hessian(True))
    loss_sum, grad, weight_sum = partials.finalize()
    hessian = partials.hessian_sum()
    objective = loss_sum
    if penalty.l2:
        w = coef[:-1] / scale
        objective = loss_sum + weight_sum * (0.5 * penalty.l2 * fsum(w * w))
        grad = grad + np.append(weight_sum * penalty.l2 * w / scale, 0.0)
        hessian = hessian + np.diag(np.append(weight_sum * penalty.l2 / (scale * scale), 0.0))
    return _SecondOrder(loss_sum, objective, grad, hessian, weight_sum)


def infer(
    evaluator: Evaluator,
    spec: KernelSpec,
    solver_coef: np.ndarray,
    standardization: Standardization | None,
    penalty: Penalty,
    names: Sequence[str],
    cov_type: str = "nonrobust",
    confidence: float = DEFAULT_CONFIDENCE,
    separated: bool = False,
) -> Inferred:
    """Inference at the optimum of the fit whose loss pass is ``spec``, from
    its solution ``solver_coef`` (in the solver's coordinates, those of
    ``standardization``).  ``names``: the features (for messages).

    A solver stops within its tolerance of the optimum (the default's
    relative error in the coefficients is ~1e-7); the Hessian pass that
    inference needs also gives the Newton step from there, so up to
    :data:`MAX_NEWTON_STEPS` steps are taken while one moves a coefficient
    by more than :data:`NEGLIGIBLE_STEP` of the largest and lowers the
    gradient (the objective rising no more than rounding,
    :data:`OBJECTIVE_ROUNDING`): the coefficients, and their covariance, are then those of
    the optimum to rounding, as statsmodels' are.  Each step costs one
    Hessian pass; then one loss pass at zero (the null model) and, for
    ``hc0``, one score pass.

    ``separated``: the fit found the classes separated (and warned so); a
    singular Hessian is then :class:`SeparationError` unless the columns are
    collinear at zero too (one more Hessian pass tells), and the inference's
    own separation warning is not repeated.
    """
    check_inference(cov_type, confidence)
    if penalty.l1 > 0:
        raise ConfigError(str(refusal(l1=penalty.l1, n_classes=0, categorical=False)), column="inference")
    n = solver_coef.shape[0]
    scale = np.ones(n - 1) if standardization is None else standardization.scale
    coef = np.asarray(solver_coef, dtype=np.float64)
    at = _second_order(evaluator, spec, coef, penalty, scale)
    passes, steps = 1, 0
    while steps < MAX_NEWTON_STEPS:
        step = cholesky_solve(at.hessian, -at.grad)
        if step is None or not np.abs(step).max() > NEGLIGIBLE_STEP * max(1.0, float(np.abs(coef).max())):
            break
        trial = _second_order(evaluator, spec, coef + step, penalty, scale)
        passes += 1
        # closer to the optimum: a smaller gradient, and an objective no higher
        # than rounding allows (near the optimum its change is below rounding)
        noise = OBJECTIVE_ROUNDING * abs(at.objective)
        if not (np.abs(trial.grad).max() < np.abs(at.grad).max() and trial.objective <= at.objective + noise):
            break
        coef, at, steps = coef + step, trial, steps + 1
    hessian, weight_sum = at.hessian, at.weight_sum
    factor, failed = cholesky_factor(hessian, COLLINEAR_PIVOT_RATIO * np.diag(hessian))
    if failed is not None and separated:
        # every weight p(1 - p) may have vanished; the columns are collinear or
        # not whatever the (positive) weights: at zero, where each is 1/4, they tell
        at_zero = _second_order(evaluator, spec, np.zeros(n), penalty, scale).hessian
        zero_factor, zero_failed = cholesky_factor(at_zero, COLLINEAR_PIVOT_RATIO * np.diag(at_zero))
        if zero_failed is not None:
            raise CollinearityError(_collinear_message(at_zero, zero_factor, zero_failed, with_intercept(names)))
        raise SeparationError(
            "coefficient inference: the classes are (nearly) separated, so the log-loss has no optimum and "
            "the Hessian where the solver stopped is singular (every row's probability is 0 or 1): there are no "
            "standard errors; expected classes that overlap (add an l2 penalty, or remove the features that "
            "separate the classes)"
        )
    if failed is not None:
        raise CollinearityError(_collinear_message(hessian, factor, failed, with_intercept(names)))
    covariance = cholesky_inverse(factor)
    if cov_type == "hc0":
        meat = evaluator.partials(coef, spec.with_hessian(True, scores=True)).hessian_sum()
        covariance = _product(_product(covariance, meat), covariance)
        passes += 1
    _, zero_grad, _ = evaluator.partials(np.zeros(n), spec).finalize()
    passes += 1
    positive = fsum(np.array([0.5 * weight_sum, -zero_grad[-1]]))
    share = positive / weight_sum
    null = positive * math.log(share) + (weight_sum - positive) * math.log1p(-share)
    original = coef
    if standardization is not None:
        original = standardization.to_original(coef)
        to_original = _to_original_map(standardization)
        covariance = _product(_product(to_original, covariance), to_original.T)
    inference = Inference(original, covariance, cov_type, confidence, -at.loss_sum, null, weight_sum)
    if not separated and inference.pseudo_r2 > SEPARATED_R2:  # (separated: the fit has said so)
        warnings.warn(
            f"the classes are (nearly) separated: pseudo-R2 {inference.pseudo_r2!r}, the likelihood goes to its "
            "maximum as coefficients grow without bound, so the standard errors are not meaningful (add --l2, "
            "or remove the features that separate the classes)",
            SeparationWarning,
            stacklevel=3,
        )
    return Inferred(inference, coef, at.grad / weight_sum, steps, passes)


def _to_original_map(standardization: Standardization) -> np.ndarray:
    """The matrix of ``[beta, b~] -> [w, b]``: ``w = beta / scale``,
    ``b = b~ - (center / scale) . beta``."""
    d = standardization.scale.shape[0]
    matrix = np.zeros((d + 1, d + 1))
    matrix[np.arange(d), np.arange(d)] = 1.0 / standardization.scale
    matrix[d, :d] = -(standardization.center / standardization.scale)
    matrix[d, d] = 1.0
    return matrix


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` with every entry a :func:`math.fsum` of the products."""
    out = np.empty((a.shape[0], b.shape[1]))
    columns = [np.ascontiguousarray(b[:, j]) for j in range(b.shape[1])]
    for i in range(a.shape[0]):
        row = a[i]
        for j, column in enumerate(columns):
            out[i, j] = math.fsum((row * column).tolist())
    return out


def _collinear_message(hessian: np.ndarray, factor: np.ndarray, failed: int, names: list[str]) -> str:
    """What makes the Hessian singular at column ``failed``: a constant column
    (no curvature at all) or a combination of the columns before it."""
    name = names[failed]
    if hessian[failed, failed] == 0.0:
        return (
            f"the Hessian at the optimum is singular: {name!r} is constant (it carries no information "
            "beyond the intercept); expected linearly independent columns (leave it out, or add an L2 penalty)"
        )
    combination = cholesky_combination(factor, hessian, failed)
    largest = float(np.max(np.abs(combination))) if combination.size else 0.0
    others = [names[j] for j in np.flatnonzero(np.abs(combination) >= COLLINEAR_SHARE * largest)] if largest else []
    return (
        f"the Hessian at the optimum is singular: {name!r} is (numerically) a linear combination of "
        f"{others}; expected linearly independent columns (leave one of them out, or add an L2 penalty)"
    )
