"""Exact K-fold cross-validation: the fits of the folds advance in lockstep,
one pass over the data per step for all of them.

The rows' folds come from the row hash of the validation split
(:class:`pipeline.data.Folds`), so they are the same for any partitioning;
each chunk carries its rows' folds in its labels, and one cross-validation
pass (:func:`pipeline.kernel.fold_partials`) computes the partial sums of
every fit that asked for an evaluation: fold ``k``'s fit sees the rows of
the other folds (the rows of fold ``k`` weigh 0, which the exact sums
ignore), so its sums -- and its statistics, from one pass of each fold's
statistics (:class:`pipeline.kernel.FoldStats`) -- are those of a plain fit
on the other rows, and so is its model, bit for bit.

:class:`Lockstep` runs each fit (:func:`pipeline.fitting.fit`, unchanged) in
a thread of its own on a :class:`MemberEvaluator`; when every fit still
running has asked for its next evaluation, the coordinating thread runs one
pass for all of them and hands each its sums.  A fit's values depend only
on its own evaluations, so the threads' timing changes nothing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from .kernel import Categories, FoldMember, FoldPartials, FoldSpec, FoldStats, KernelSpec, Partials, Stats
from .objective import Evaluator

__all__ = ["Lockstep", "MemberEvaluator", "fold_summary"]

T = TypeVar("T")
#: the fold of a member that sees every row (the refit on all rows)
ALL_ROWS = -1


class Aborted(Exception):
    """A lockstep fit stopped because another fit, or the pass, failed."""


class Lockstep:
    """Fits in threads whose evaluations are batched into cross-validation
    passes over ``evaluator`` (whose chunks' labels carry their folds)."""

    def __init__(self, evaluator: Evaluator, n_folds: int) -> None:
        self.evaluator = evaluator
        self.n_features = evaluator.n_features
        self.n_folds = n_folds
        self.n_passes = 0
        self._fold_stats: FoldStats | None = None
        self._fold_stats_lock = threading.Lock()
        self._condition = threading.Condition()
        self._requests: dict[int, tuple[FoldMember, np.ndarray]] = {}
        self._results: dict[int, Partials] = {}
        self._live = 0
        self._running = False
        self._error: BaseException | None = None

    def member(self, index: int, fold: int) -> MemberEvaluator:
        """The evaluator of fit ``index``, trained on the rows of every fold
        but ``fold`` (:data:`ALL_ROWS`: every row)."""
        return MemberEvaluator(self, index, fold)

    def fold_stats(self, categories: Categories | None = None) -> FoldStats:
        """Each fold's statistics (one pass, the first time), with its rows
        per level given the ``categories`` (every fit asks with the same:
        the levels are learnt from every row)."""
        with self._fold_stats_lock:  # (the folds' fits ask from their threads)
            if self._fold_stats is None:
                self._fold_stats = self.evaluator.fold_stats(self.n_folds, categories)  # type: ignore[attr-defined]
                self.n_passes += 1
        return self._fold_stats

    def evaluate(self, index: int, member: FoldMember, coef: np.ndarray) -> Partials:
        """Fit ``index``'s sums at ``coef``: in the next lockstep pass, or at
        once when no lockstep run is going on."""
        coef = np.asarray(coef, dtype=np.float64)
        if not self._running:
            return self.evaluate_many([(member, coef)])[0]
        with self._condition:
            if self._error is not None:
                raise Aborted("another fit of the cross-validation failed") from self._error
            self._requests[index] = (member, coef)
            self._condition.notify_all()
            while index not in self._results and self._error is None:
                self._condition.wait()
            if index not in self._results:
                raise Aborted("another fit of the cross-validation failed") from self._error
            return self._results.pop(index)

    def evaluate_many(self, batch: Sequence[tuple[FoldMember, np.ndarray]]) -> list[Partials]:
        """One cross-validation pass for ``batch``'s fits, their sums in order."""
        spec = KernelSpec(folds=FoldSpec(tuple(member for member, _ in batch)))
        coef = np.concatenate([coef for _, coef in batch])
        found = self.evaluator.partials(coef, spec)
        self.n_passes += 1
        assert isinstance(found, FoldPartials)
        return list(found.parts)

    def run(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Run ``jobs`` (each a fit on one of this lockstep's members), each
        in a thread, serving their evaluations a pass at a time; their results
        in order.  Once every thread has stopped, an error is raised: the last
        job's, the fit on every row (its error is the data's, e.g. a single
        class, where the folds' would only be theirs), else the first by job order."""
        outcomes: list = [None] * len(jobs)
        errors: dict[int, BaseException] = {}

        def target(i: int, job: Callable[[], T]) -> None:
            try:
                outcomes[i] = job()
            except BaseException as exc:  # noqa: BLE001 - handed to the coordinating thread
                errors[i] = exc
            finally:
                with self._condition:
                    self._live -= 1
                    self._condition.notify_all()

        threads = [threading.Thread(target=target, args=(i, job), daemon=True) for i, job in enumerate(jobs)]
        self._live, self._running, self._error = len(jobs), True, None
        self._requests.clear()
        self._results.clear()
        for thread in threads:
            thread.start()
        failure: BaseException | None = None
        try:
            while True:
                with self._condition:
                    while self._live and len(self._requests) < self._live and not errors:
                        self._condition.wait()
                    if errors or not self._live:
                        break
                    batch = sorted(self._requests.items())
                    self._requests.clear()
                parts = self.evaluate_many([request for _, request in batch])
                with self._condition:
                    self._results.update({index: part for (index, _), part in zip(batch, parts)})
                    self._condition.notify_all()
        except BaseException as exc:  # the pass failed (or was cancelled): stop every fit
            failure = exc
        finally:
            with self._condition:
                if failure is not None or errors:
                    self._error = failure or errors[min(errors)]
                self._condition.notify_all()
            for thread in threads:
                thread.join()
            self._running = False
        if failure is not None:
            raise failure
        last = errors.get(len(jobs) - 1)
        if last is not None and not isinstance(last, Aborted):
            raise last
        real = [error for _, error in sorted(errors.items()) if not isinstance(error, Aborted)]
        if real or errors:
            raise real[0] if real else errors[min(errors)]
        return outcomes


class MemberEvaluator:
    """The :class:`~pipeline.objective.Evaluator` of one lockstep fit."""

    def __init__(self, lockstep: Lockstep, index: int, fold: int) -> None:
        self.lockstep = lockstep
        self.index = index
        self.fold = fold
        self.n_features = lockstep.n_features

    def partials(self, coef: np.ndarray, spec: KernelSpec = KernelSpec()) -> Partials:
        return self.lockstep.evaluate(self.index, FoldMember(self.fold, False, spec), coef)

    def held_out(self, spec: KernelSpec) -> FoldMember:
        """The member of a pass over this fit's held-out rows (its fold's)."""
        return FoldMember(self.fold, True, spec)

    def stats(self, categories: Categories | None = None) -> Stats:
        return self.lockstep.fold_stats(categories).training(self.fold)


def fold_summary(losses: Sequence[float]) -> tuple[float, float]:
    """The mean of the folds' held-out losses and their sample standard
    deviation (exact sums, each divided once)."""
    k = len(losses)
    mean = math.fsum(losses) / k
    if k < 2:
        return mean, 0.0
    deviations = [(loss - mean) ** 2 for loss in losses]
    return mean, math.sqrt(math.fsum(deviations) / (k - 1))
