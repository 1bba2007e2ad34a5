"""Which implementation of a pass runs: compiled or the numpy reference.

Every pass has two implementations that give the same bits (tested, and the
design of :mod:`pipeline.fused`): the numpy reference (:mod:`pipeline.kernel`)
and the compiled kernels.  A compiled pass is 3-70x faster, but compiling a
family of kernels the first time on a machine costs seconds (on the 2-core
benchmark VM: the statistics pass 2.5 s, the loss pass 6 s, the Hessian pass
7.6 s), and loading it from numba's on-disk cache still costs about 0.3 s in
every process.  On small data the reference finishes the whole fit before the
compiler would have finished (the demo's 100,000 x 8 rows: a reference loss
pass 14 ms, a Hessian pass 64 ms), so a first run there would be mostly
compilation.  Which one runs changes only the time, never a result.

The policy, per process and per *family* of kernels (:data:`FAMILIES`):

1. a family this process has run compiled keeps running compiled;
2. a family this machine has compiled before runs compiled (numba loads it
   from its cache): a marker file, written once a family has run compiled,
   says so (:class:`Tiers`);
3. a caller that knows the data are large (:func:`worth_compiling`: at least
   :data:`COMPILE_MIN_VALUES` feature values) compiles ahead, before the data
   are read (:func:`pipeline.fused.warm_up`), and makes the process
   :attr:`Tiers.eager`: every other family it needs compiles at its first
   call (a hand-over to Newton, categorical columns, scoring);
4. otherwise the reference runs, timed, until this process has spent
   :data:`REFERENCE_BUDGET_S` in one family's reference: then that family is
   compiled (:func:`use_compiled`), for the rest of this run and for every
   later one.

:func:`worth_compiling` and :func:`use_compiled` are the decisions (pure);
:class:`Tiers` is the process's state and the markers.  The environment
variable ``PIPELINE_KERNELS`` (:data:`MODE_VARIABLE`) overrides the policy in
every process that inherits it: ``compiled`` always compiles (the policy
before this module), ``reference`` never does, ``auto`` (the default) is the
policy above.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from .errors import invalid

__all__ = [
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
#: ahead: 8M values (64 MB of float64).  Below it the reference's whole fit
#: costs about what the compilation would (a loss pass ~10-20 ns and a
#: Hessian pass ~80-120 ns per value on the benchmark VM, against 2.5-7.6 s
#: per family to compile once), so the first run there is not made slower by
#: seconds of compilation; the compiled code, once on the machine, serves all
#: later runs of any size (rule 2).
COMPILE_MIN_VALUES = 8_000_000

#: Seconds of one family's reference passes after which a process compiles
#: that family (a long fit on small data, or a caller that gave no size).
REFERENCE_BUDGET_S = 2.0

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
    *, ready: bool, reference_seconds: float, mode: Mode = "auto", budget_s: float = REFERENCE_BUDGET_S
) -> bool:
    """Policy only: run a family compiled when it is ``ready`` (run compiled
    here, compiled on this machine before, or warmed up), or once its
    reference passes have cost ``budget_s`` in this process; ``mode``
    ``compiled``/``reference`` decides alone."""
    if mode != "auto":
        return mode == "compiled"
    return ready or reference_seconds >= budget_s


class Tiers:
    """One process's choice between compiled and reference passes.

    ``identity``: what the compiled code depends on (the kernels' source
    files and numba's version, :func:`pipeline.fused.compiled_identity`):
    a marker written under one identity says nothing about another.
    ``directory``: where the markers live (default: the temp directory, next
    to the compile locks).  A missing or stale marker only costs time: a
    family marked but no longer in numba's cache compiles at its first call.
    """

    def __init__(self, identity: str, directory: str | None = None) -> None:
        self.identity = identity
        self.directory = Path(directory or tempfile.gettempdir())
        #: families that run compiled in this process
        self.ready: set[str] = set()
        #: seconds of reference passes per family in this process
        self.spent: dict[str, float] = {}
        #: this process works on large data: every family runs compiled
        self.eager = False
        self._marked: dict[str, bool] = {}

    def marker(self, family: str) -> Path:
        """The file that says ``family`` has been compiled on this machine."""
        digest = hashlib.sha256(f"{self.identity}|{family}".encode()).hexdigest()[:16]
        return self.directory / f"pipeline-numba-{digest}.compiled"

    def compiled(self, family: str) -> bool:
        """Whether the next pass of ``family`` runs compiled (:func:`use_compiled`)."""
        mode = kernels_mode()
        if mode == "auto" and family not in self.ready and family not in self._marked:
            self._marked[family] = self.marker(family).exists()  # looked up once per process
        return use_compiled(
            ready=self.eager or family in self.ready or self._marked.get(family, False),
            reference_seconds=self.spent.get(family, 0.0),
            mode=mode,
            budget_s=REFERENCE_BUDGET_S,
        )

    def wants_compiled(self) -> bool:
        """Whether a caller that knows its data are large compiles ahead (not
        under ``PIPELINE_KERNELS=reference``)."""
        return kernels_mode() != "reference"

    def ran_compiled(self, family: str) -> None:
        """``family`` ran compiled here: it stays so, and is marked for later
        processes (best effort: an unwritable directory only costs time)."""
        if family in self.ready:
            return
        self.ready.add(family)
        if not self._marked.get(family):
            try:
                self.marker(family).touch()
            except OSError:
                pass
            self._marked[family] = True

    def reference(self, family: str, run: Callable[[], _T]) -> _T:
        """``run()`` (a reference pass of ``family``), its time counted."""
        started = time.perf_counter()
        try:
            return run()
        finally:
            self.spent[family] = self.spent.get(family, 0.0) + time.perf_counter() - started


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
