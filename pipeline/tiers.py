"""Which implementation of a pass runs: compiled or the numpy reference.

Every pass has two implementations that give the same bits (tested, and the
design of :mod:`pipeline.fused`): the numpy reference (:mod:`pipeline.kernel`)
and the compiled kernels.  A compiled pass is 3-70x faster, but compiling a
kernel the first time on a machine costs seconds (on the 2-core benchmark
VM: the statistics pass 2.5 s, the loss pass 6 s, the Hessian pass 7.6 s),
and loading it from numba's on-disk cache still costs 0.5-0.8 s in a fresh
process (numba's import included).  On small data the reference finishes
the whole fit before the compiler would have finished (the demo's 100,000 x
8 rows: a reference loss pass 14 ms, a Hessian pass 64 ms), and often before
the cache would have loaded.  Which one runs changes only the time, never a result.

The policy, per process and per *variant* of a kernel (its family,
:data:`FAMILIES`, and the types it is compiled for: features' dtype and
layout, weights, standardization):

1. a variant this process has run compiled keeps running compiled;
2. a call over at least :data:`COMPILE_MIN_VALUES` feature values (rows x
   features) runs compiled, and a caller that knows its data are that large
   (:func:`worth_compiling`) compiles ahead, before the data are read
   (:func:`pipeline.fused.warm_up`), and makes the process
   :attr:`Tiers.eager`: every variant it needs then compiles at its first
   call (a hand-over to Newton, categorical columns, scoring);
3. otherwise the reference runs, timed, and a variant is compiled once this
   process has spent as much on its reference passes as compiling would
   cost -- the rent-or-buy rule: :data:`CACHED_BUDGET_S` where a marker says
   the variant is in numba's cache (loading it costs about that), else
   :data:`REFERENCE_BUDGET_S`.  A marker is written next to numba's cache
   once a variant has run compiled.

:func:`worth_compiling` and :func:`use_compiled` are the decisions (pure);
:class:`Tiers` is the process's state and the markers.  The environment
variable ``PIPELINE_KERNELS`` (:data:`MODE_VARIABLE`) overrides the policy in
every process that inherits it: ``compiled`` always compiles where numba is
installed (the policy before this module), ``reference`` never compiles,
``auto`` (the default) is the policy above.  A worker that joins a cluster
after the warm-up is not eager: it follows rule 3.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from .errors import invalid

__all__ = [
    "CACHED_BUDGET_S",
    "COMPILE_MIN_VALUES",
    "FAMILIES",
    "MODES",
    "MODE_VARIABLE",
    "REFERENCE_BUDGET_S",
    "Family",
    "Tiers",
    "kernels_mode",
    "use_compiled",
    "worth_compiling",
]

#: The families of compiled kernels, each compiled (and marked) on its own:
#: the statistics pass, the binary loss pass, the same with categorical
#: columns, the Hessian pass (HC0 scores included), the multinomial pass, and
#: the margins that ``predict`` and ``evaluate`` score with.
Family = Literal["stats", "loss", "levels", "hessian", "softmax", "margins"]
FAMILIES: tuple[Family, ...] = ("stats", "loss", "levels", "hessian", "softmax", "margins")

#: Feature values (rows x features) from which a fit compiles its kernels
#: ahead, and a single call runs compiled: 8M values (64 MB of float64).  Below it the reference's whole fit
#: costs about what the compilation would (a loss pass ~10-20 ns and a
#: Hessian pass ~80-120 ns per value on the benchmark VM, against 2.5-7.6 s
#: per family to compile once), so the first run there is not made slower by
#: seconds of compilation; the compiled code, once on the machine, serves all
#: later runs of any size (rule 2).
COMPILE_MIN_VALUES = 8_000_000

#: Seconds of one variant's reference passes after which a process compiles
#: it (a long fit on small data, or a caller that gave no size): less than
#: compiling costs, so a run pays at most twice what the better choice would.
REFERENCE_BUDGET_S = 2.0
#: The same where a marker says the variant is in numba's cache: about what
#: loading the first compiled kernel costs a fresh process, numba's import
#: and its registries included (0.5-0.8 s on the benchmark VM; 0.3 s let the
#: demo's Hessian passes load their kernel just before the fit ended, which
#: made it 1.4x slower than on the reference).
CACHED_BUDGET_S = 1.0

#: The environment variable that overrides the policy, and its values.
MODE_VARIABLE = "PIPELINE_KERNELS"
Mode = Literal["auto", "compiled", "reference"]
MODES: tuple[Mode, ...] = ("auto", "compiled", "reference")

_T = TypeVar("_T")


def kernels_mode(environ: dict[str, str] | None = None) -> Mode:
    """``PIPELINE_KERNELS`` of ``environ`` (default: this process's
    environment): ``auto`` when unset; a ConfigError names any other value."""
    value = (os.environ if environ is None else environ).get(MODE_VARIABLE, "auto").strip().lower() or "auto"
    for mode in MODES:
        if value == mode:
            return mode
    raise invalid(MODE_VARIABLE, " or ".join(MODES), value)


def worth_compiling(n_values: int) -> bool:
    """Policy only: whether a fit over ``n_values`` feature values (rows x
    features) compiles its kernels ahead (else it starts on the reference)."""
    return n_values >= COMPILE_MIN_VALUES


def use_compiled(
    *,
    ready: bool,
    cached: bool,
    reference_seconds: float,
    mode: Mode = "auto",
    budget_s: float = REFERENCE_BUDGET_S,
    cached_budget_s: float = CACHED_BUDGET_S,
) -> bool:
    """Policy only: run a variant compiled when it is ``ready`` (run compiled
    here, an eager process, or a large call), or once its reference passes
    have cost what compiling would: ``cached_budget_s`` when it is
    ``cached`` on this machine, else ``budget_s``; ``mode``
    ``compiled``/``reference`` decides alone."""
    if mode != "auto":
        return mode == "compiled"
    return ready or reference_seconds >= (cached_budget_s if cached else budget_s)


class Tiers:
    """One process's choice between compiled and reference passes, per
    variant (a string naming a kernel family and the types it runs on).

    ``identity``: what the compiled code depends on (the kernels' source
    files, numba's and Python's versions and installation): a marker
    written under one identity says nothing about another.  ``directory``:
    where the markers live (numba's cache directory of the kernels, else the
    temp directory).  A missing or stale marker only costs time.  Safe to
    share between threads.
    """

    def __init__(self, identity: str, directory: str | os.PathLike | None = None) -> None:
        self.identity = identity
        self.directory = Path(directory or tempfile.gettempdir())
        #: variants that run compiled in this process
        self.ready: set[str] = set()
        #: seconds of reference passes per variant in this process
        self.spent: dict[str, float] = {}
        #: this process works on large data: every variant runs compiled
        self.eager = False
        self._marked: dict[str, bool] = {}
        self._lock = threading.Lock()

    def marker(self, variant: str) -> Path:
        """The file that says ``variant`` has been compiled here before."""
        digest = hashlib.sha256(f"{self.identity}|{variant}".encode()).hexdigest()[:16]
        return self.directory / f"pipeline-kernel-{digest}.compiled"

    def compiled(self, variant: str, n_values: int = 0) -> bool:
        """Whether the next call of ``variant``, over ``n_values`` feature
        values, runs compiled (:func:`use_compiled`)."""
        mode = kernels_mode()
        ready = self.eager or variant in self.ready or worth_compiling(n_values)
        cached = False
        if mode == "auto" and not ready:
            with self._lock:
                if variant not in self._marked:  # looked up once per process
                    self._marked[variant] = self.marker(variant).exists()
                cached = self._marked[variant]
        return use_compiled(
            ready=ready,
            cached=cached,
            reference_seconds=self.spent.get(variant, 0.0),
            mode=mode,
            budget_s=REFERENCE_BUDGET_S,
            cached_budget_s=CACHED_BUDGET_S,
        )

    def wants_compiled(self) -> bool:
        """Whether a caller that knows its data are large compiles ahead (not
        under ``PIPELINE_KERNELS=reference``)."""
        return kernels_mode() != "reference"

    def ran_compiled(self, variant: str) -> None:
        """``variant`` ran compiled here: it stays so, and is marked for later
        processes (best effort: an unwritable directory only costs time)."""
        with self._lock:
            if variant in self.ready:
                return
            self.ready.add(variant)
            if self._marked.get(variant):
                return
            self._marked[variant] = True
        try:
            self.marker(variant).touch()
        except OSError:
            pass

    def run(self, variant: str, n_values: int, compiled: Callable[[], _T], reference: Callable[[], _T]) -> _T:
        """``compiled()`` or ``reference()`` for a call of ``variant`` over
        ``n_values`` feature values, as :meth:`compiled` decides; a compiled
        run is recorded (:meth:`ran_compiled`), a reference one timed."""
        if not self.compiled(variant, n_values):
            return self.reference(variant, reference)
        result = compiled()
        self.ran_compiled(variant)
        return result

    def reference(self, variant: str, run: Callable[[], _T]) -> _T:
        """``run()`` (a reference pass of ``variant``), its time counted."""
        started = time.perf_counter()
        try:
            return run()
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.spent[variant] = self.spent.get(variant, 0.0) + elapsed


def source_stamp(*paths: str | os.PathLike) -> str:
    """Size and modification time of each file (what numba's cache checks)."""
    stamps = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            stamps.append(f"{path}:?")
        else:
            stamps.append(f"{path}:{info.st_size}:{info.st_mtime_ns}")
    return "|".join(stamps)
