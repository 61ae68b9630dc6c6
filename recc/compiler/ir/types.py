"""Tensor types of the IR: a dtype and a shape whose dims are ints or symbolic monomials.

A symbolic dim is a monomial `coef * s1 * s2 ...` over named symbols (`batch`, `80*batch`). Monomials
are closed under the products and quotients that reshapes of a batched tensor need, and they compare
structurally, which is all broadcasting and the verifier ask of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Union

import numpy as np

DTYPES = ("float32", "float64", "bfloat16", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32",
          "uint16", "uint8", "bool")


@dataclass(frozen=True, order=True)
class Sym:
    """A symbolic dim: `coef * prod(names)`; names are sorted so equal monomials compare equal."""

    names: tuple[str, ...]
    coef: int = 1

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a symbolic dim needs at least one symbol; use an int")
        object.__setattr__(self, "names", tuple(sorted(self.names)))

    def __str__(self) -> str:
        body = "*".join(self.names)
        return body if self.coef == 1 else f"{self.coef}*{body}"


Dim = Union[int, Sym]


def sym(name: str) -> Sym:
    return Sym((name,))


def dim_mul(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if isinstance(a, int):
        a, b = b, a
    assert isinstance(a, Sym)
    if isinstance(b, int):
        return Sym(a.names, a.coef * b) if b != 0 else 0
    return Sym(a.names + b.names, a.coef * b.coef)


def dim_div(a: Dim, b: Dim) -> Dim | None:
    """a / b when it is an exact monomial or int, else None."""
    if isinstance(b, int):
        if b == 0:
            return None
        if isinstance(a, int):
            return a // b if a % b == 0 else None
        return Sym(a.names, a.coef // b) if a.coef % b == 0 else None
    if isinstance(a, int):
        return None
    remaining = list(a.names)
    for name in b.names:
        if name not in remaining:
            return None
        remaining.remove(name)
    if a.coef % b.coef:
        return None
    coef = a.coef // b.coef
    return Sym(tuple(remaining), coef) if remaining else coef


def numel(shape: tuple[Dim, ...]) -> Dim:
    out: Dim = 1
    for d in shape:
        out = dim_mul(out, d)
    return out


def bind_dim(d: Dim, env: dict[str, int]) -> int:
    if isinstance(d, int):
        return d
    return d.coef * prod(env[n] for n in d.names)


@dataclass(frozen=True)
class TensorType:
    shape: tuple[Dim, ...]
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {DTYPES}")
        for d in self.shape:
            if not isinstance(d, (int, Sym)) or isinstance(d, bool) or (isinstance(d, int) and d < 0):
                raise ValueError(f"bad dim {d!r} in shape {self.shape}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def bind(self, env: dict[str, int]) -> tuple[int, ...]:
        return tuple(bind_dim(d, env) for d in self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"


def dtype_of_array(a: np.ndarray) -> str:
    name = str(a.dtype)
    if name not in DTYPES:
        raise ValueError(f"unsupported array dtype {name}")
    return name


def is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


def is_int(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))
