"""Training configuration: one frozen object behind the CLI and the API."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError
from .reduce import ClusterSpec
from .solvers import GDOptions

__all__ = ["SOLVERS", "TrainConfig"]

SOLVERS = ("gd",)
CACHE_MODES = ("memory", "none")


@dataclass(frozen=True)
class TrainConfig:
    """What to train on, how, where, and where to put the result.

    ``cluster=None`` means the in-process path (no Dask at all).
    ``cache``: ``memory`` keeps decoded chunks on the workers between passes;
    ``none`` re-reads Parquet every pass.
    """

    data: str
    label: str
    out: str | None = None
    features: tuple[str, ...] | None = None
    solver: str = "gd"
    gd: GDOptions = field(default_factory=GDOptions)
    cluster: ClusterSpec | None = field(default_factory=ClusterSpec)
    cache: str = "memory"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ConfigError(f"unknown solver {self.solver!r}; expected one of {', '.join(SOLVERS)}")
        if self.cache not in CACHE_MODES:
            raise ConfigError(f"unknown cache mode {self.cache!r}; expected one of {', '.join(CACHE_MODES)}")
        if self.gd.max_iter < 0:
            raise ConfigError(f"max_iter must be >= 0, got {self.gd.max_iter}")
        if not self.gd.tol >= 0:
            raise ConfigError(f"tol must be >= 0, got {self.gd.tol}")
        if self.features is not None:
            object.__setattr__(self, "features", tuple(self.features))
