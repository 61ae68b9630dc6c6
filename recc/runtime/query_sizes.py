"""Query sizes (candidate items per query, i.e. rows per request) for the load generator.

    fixed:N            every query has N items
    lognormal:MU,SIGMA numpy's lognormal with log-space MU and SIGMA (as DeepRecSys's loadGenerator.py;
                       its scripts use 5.1,0.2: median ~164), rounded, clipped to 1..1024
    deeprecsys         heavy tail up to 1,000 items: lognormal MU=ln(100), SIGMA=1.0, clipped to 1..1000
                       (median 100, p90 ~360, ~1% of queries at the cap)
    file:PATH          an empirical distribution: one size per line, drawn uniformly (DeepRecSys's `file` mode)

`deeprecsys` is an approximation, not data: the DeepRecSys paper (Gupta et al., ISCA 2020) shows that
production query sizes are heavy-tailed, far heavier than the lognormal its public scripts use, with
queries up to ~1,000 items; the production distribution itself is not published. Use `file:` for a
measured one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOGNORMAL_CAP = 1024
DEEPRECSYS = (math.log(100.0), 1.0, 1000)  # (mu, sigma, cap): see the module docstring


@dataclass(frozen=True)
class QuerySizes:
    spec: str
    kind: str
    fixed: int = 0
    mu: float = 0.0
    sigma: float = 0.0
    cap: int = LOGNORMAL_CAP
    empirical: tuple[int, ...] = ()

    @property
    def largest(self) -> int:
        return self.fixed if self.kind == "fixed" else max(self.empirical) if self.kind == "file" else self.cap

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "fixed":
            return np.full(n, self.fixed, np.int64)
        if self.kind == "file":
            return np.asarray(self.empirical, np.int64)[rng.integers(0, len(self.empirical), n)]
        sizes = np.rint(rng.lognormal(self.mu, self.sigma, n))
        return np.clip(sizes, 1, self.cap).astype(np.int64)


def parse_sizes(spec: str) -> QuerySizes:
    """`fixed:64`, `lognormal:5.1,0.2`, `deeprecsys` or `file:PATH` (see the module docstring)."""
    kind, _, arg = spec.partition(":")
    try:
        if kind == "fixed" and int(arg) >= 1:
            return QuerySizes(spec, "fixed", fixed=int(arg))
        if kind == "lognormal":
            mu, sigma = (float(v) for v in arg.split(","))
            if sigma >= 0:
                return QuerySizes(spec, "lognormal", mu=mu, sigma=sigma)
        if kind == "deeprecsys" and not arg:
            mu, sigma, cap = DEEPRECSYS
            return QuerySizes(spec, "lognormal", mu=mu, sigma=sigma, cap=cap)
        if kind == "file":
            sizes = tuple(int(line) for line in Path(arg).read_text().split())
            if sizes and min(sizes) >= 1:
                return QuerySizes(spec, "file", empirical=sizes)
    except (ValueError, OSError) as e:
        raise ValueError(f"query sizes {spec!r}: {e}") from None
    raise ValueError(f"query sizes {spec!r}: expected fixed:N (N >= 1), lognormal:MU,SIGMA, deeprecsys or "
                     "file:PATH (positive sizes, one per line)")
