"""What every ATen converter works with: the conversion context, the registry and the dtype map.

ATen op -> IR converters live one module per op family next to this one (elementwise, dense, shapes,
scalars, embedding); each registers itself with `@converts("op.overload", ...)`.

Each converter gets (ctx, fx_node, *args, **kwargs) with args as in the ATen schema and returns an IR
Value, a Python scalar / symbolic dim, a tuple of those, or a `Lazy` placeholder for values that are only
legal as an operand of a specific op (e.g. the `arange` offsets torch builds for a 2-D EmbeddingBag).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from recc.compiler.ir import Graph, Value
from recc.compiler.ir.types import Dim


class ConversionError(ValueError):
    pass


TORCH_TO_IR_DTYPE = {
    torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "bfloat16", torch.float16: "float16",
    torch.int64: "int64", torch.int32: "int32", torch.int16: "int16", torch.int8: "int8", torch.uint8: "uint8",
    torch.uint16: "uint16", torch.uint32: "uint32", torch.uint64: "uint64",
    torch.bool: "bool",
}


def ir_dtype(dtype: torch.dtype) -> str:
    """The IR dtype of a torch dtype, or a ConversionError naming it (complex, uint16, float8 ...)."""
    try:
        return TORCH_TO_IR_DTYPE[dtype]
    except KeyError:
        raise ConversionError(f"dtype {str(dtype).removeprefix('torch.')} is not supported (recc's dtypes: "
                              f"{', '.join(sorted(TORCH_TO_IR_DTYPE.values()))})") from None


@dataclass(frozen=True)
class Lazy:
    """A value we do not materialize: only the op that knows its meaning may consume it."""

    what: str
    args: tuple[Any, ...]


class Ctx:
    def __init__(self, graph: Graph, symbols: Any) -> None:
        self.graph = graph
        self.symbols = symbols
        self.env: dict[torch.fx.Node, Any] = {}
        self.origin = ""

    def value(self, arg: Any, user: Any = None) -> Value:
        v = self.env[arg] if isinstance(arg, torch.fx.Node) else arg
        if isinstance(v, Lazy):
            raise ConversionError(f"{v.what} is only supported as {v.args[-1]}")
        if not isinstance(v, Value):
            raise ConversionError(f"expected a tensor, got {type(v).__name__} {v!r}")
        return v

    def arg(self, a: Any) -> Any:
        """Resolve an argument: fx nodes to their converted values, lists elementwise."""
        if isinstance(a, torch.fx.Node):
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.arg(x) for x in a)
        return a

    def param(self, name: str, tensor: torch.Tensor) -> Value:
        array = tensor.detach().cpu()
        if array.dtype == torch.bfloat16:
            raise ConversionError("bfloat16 parameters are not supported yet")
        value = self.graph.add_param(name.replace(".", "_"), array.numpy())
        # Graph.add_param stores a 0-d array as [1]; a reshape restores the 0-d type torch gave it.
        return value if array.dim() else self.emit("reshape", [value], shape=())

    def const(self, value: Any, dtype: str) -> Value:
        return self.graph.add_param("const", np.asarray(value, dtype=dtype))

    def emit(self, op: str, inputs: list[Value], **attrs: Any) -> Value:
        return self.graph.add_node(op, inputs, attrs, origin=self.origin).output

    def out_shape(self, node: torch.fx.Node) -> tuple[Dim, ...]:
        return self.symbols.shape(node.meta["val"])

    def out_dtype(self, node: torch.fx.Node) -> str:
        return ir_dtype(node.meta["val"].dtype)

    def as_dtype(self, v: Value, dtype: str) -> Value:
        return v if v.type.dtype == dtype else self.emit("cast", [v], dtype=dtype)

    def operand(self, a: Any, dtype: str) -> Value:
        """A tensor operand or a Python scalar, as a Value of `dtype`."""
        if isinstance(a, torch.fx.Node) and isinstance(self.env[a], Value):
            return self.as_dtype(self.env[a], dtype)
        if isinstance(a, (int, float, bool)):
            return self.const(a, dtype)
        raise ConversionError(f"unsupported operand {a!r}")


CONVERTERS: dict[str, Callable[..., Any]] = {}


def converts(*names: str):
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            CONVERTERS[name] = fn
        return fn
    return wrap

