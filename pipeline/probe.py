"""What decides the bits a machine computes: a fingerprint of its kernel.

The exact sums make results independent of partitioning and order, and the
pipeline's own exponential and logarithm (:mod:`pipeline.elementary`: IEEE
basic operations only) make them independent of the CPU and of numpy's SIMD
dispatch.  What can still change a bit is the software: another version of
numpy, pyarrow, numba, Python or the pipeline itself.
:func:`kernel_fingerprint` runs the loss kernel and the elementary functions
on a fixed input and hashes the output together with those versions; workers
whose fingerprints differ must not work on the same job (:mod:`pipeline.reduce`
checks it).  ``outputs`` hashes the output alone (meant to be the same on every CPU
and library version; the tests pin it).  The CPU dispatch targets numpy enabled are
reported, not hashed.  The probe runs the numpy reference, not the compiled
kernels: that those give its bits is what the kernel tests check.
"""

from __future__ import annotations

import hashlib
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from .elementary import sigmoid_softplus
from .fused import AVAILABLE as FUSED_AVAILABLE
from .kernel import KernelSpec, chunk_partials, numpy_cpu_dispatch

__all__ = ["kernel_fingerprint"]

_PROBE_ROWS, _PROBE_FEATURES = 3000, 7


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def kernel_fingerprint() -> dict[str, Any]:
    """``{"digest": ..., ...}`` for this process; equal digests give equal bits."""
    rng = np.random.default_rng(20261128)
    X = np.asfortranarray(rng.standard_normal((_PROBE_ROWS, _PROBE_FEATURES)) * 4.0 + 0.5)
    y = (rng.random(_PROBE_ROWS) < 0.4).astype(np.float64)
    weights = rng.uniform(0.5, 2.0, _PROBE_ROWS)
    coef = rng.normal(0.0, 1.5, _PROBE_FEATURES + 1)
    spec = KernelSpec(
        center=np.full(_PROBE_FEATURES, 0.5), scale=np.full(_PROBE_FEATURES, 4.0), class_weight=(1.0, 1.7)
    )
    # the numpy reference: the compiled kernels give its bits (tested), and a
    # probe that compiled nothing keeps a fresh worker's first check fast
    partials = chunk_partials(X, y, coef, weights, spec)
    margins = np.linspace(-745.0, 709.0, 20_001)
    digest = hashlib.sha256()
    sums = partials.sums
    digest.update(repr((sums.top.tolist(), sums.bins.tolist(), sums.flags.tolist(), partials.n_samples)).encode())
    for values in sigmoid_softplus(margins):
        digest.update(values.tobytes())
    # the outputs alone: meant to be the same on every CPU and library version
    outputs = digest.copy().hexdigest()[:16]
    facts = {
        "numpy": np.__version__,
        "pyarrow": _version("pyarrow"),
        "numba": _version("numba"),
        "pipeline": _version("pipeline"),
        "python": platform.python_version(),
    }
    digest.update(repr(sorted(facts.items())).encode())
    # which SIMD paths numpy takes and whether the compiled pass runs: reported, not hashed
    return {
        "digest": digest.hexdigest()[:16],
        "outputs": outputs,
        **facts,
        "cpu_dispatch": numpy_cpu_dispatch(),
        "fused_kernel": FUSED_AVAILABLE,
    }
