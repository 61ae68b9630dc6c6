"""The state one ONNX import carries: the IR graph being built and what each ONNX tensor name stands for.

An ONNX tensor name maps to one of
- an IR `Value` (a tensor the compiled model computes),
- a numpy array known at import time (initializers, Constants, and shape arithmetic); an array of dtype
  object holds symbolic dims (`Sym`), so `Shape(x)[0] * 80` stays `80*batch`,
- a `Lazy` placeholder: a value we do not materialize (a Range over the symbolic batch, an ONNX sequence)
  that only the converter which knows its meaning may consume; anything else raises with the reason.
Arrays become IR parameters only when an op uses them as data, so shape constants never reach the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper

from recc.compiler.interpreter import run_node
from recc.compiler.ir import Graph, Value
from recc.compiler.ir.types import Dim, Sym


MAX_FOLD_ELEMENTS = 1 << 20  # a computed constant (a shape, axes, indices) is evaluated at import up to this size


class OnnxImportError(ValueError):
    """The ONNX model cannot be read or converted (the message names the problem)."""


class UnsupportedOpError(OnnxImportError):
    """An ONNX node recc does not convert; the message names its op type and node name."""


class ConversionError(ValueError):
    """Raised by a converter; the importer adds the node's op type and name."""


class InputNeededAtImport(ConversionError):
    """A graph input is used where recc needs a constant (a shape, axes, bounds): the model compiles only
    specialized on that input's value (import_onnx's `known_inputs`)."""

    def __init__(self, message: str, input_name: str) -> None:
        super().__init__(message)
        self.input_name = input_name


@dataclass(frozen=True)
class Lazy:
    """A value we do not materialize: `what` it is, and data for the one converter that consumes it."""

    what: str
    data: Any = None


@dataclass
class OnnxNode:
    """An ONNX NodeProto with its attributes decoded."""

    proto: onnx.NodeProto
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, proto: onnx.NodeProto) -> "OnnxNode":
        return cls(proto, {a.name: helper.get_attribute_value(a) for a in proto.attribute})

    @property
    def op_type(self) -> str:
        return self.proto.op_type

    @property
    def inputs(self) -> list[str]:
        return list(self.proto.input)

    @property
    def outputs(self) -> list[str]:
        return list(self.proto.output)

    def describe(self) -> str:
        name = self.proto.name or (self.outputs[0] if self.outputs else "?")
        return f"{self.op_type} node {name!r}"

    def attr(self, name: str, default: Any = None) -> Any:
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value


def is_static(v: Any) -> bool:
    return isinstance(v, np.ndarray)


def is_symbolic(a: np.ndarray) -> bool:
    return a.dtype == object and any(isinstance(d, Sym) for d in a.flat)


def onnx_axis(axis: int, rank: int) -> int:
    """An ONNX axis, -rank <= axis < rank (ONNX Runtime refuses any other), as 0..rank-1; wrapping an
    out-of-range axis silently would compute along another axis."""
    if not -rank <= axis < max(rank, 1):
        raise ConversionError(f"axis {axis} is out of range for a rank-{rank} input")
    return axis % rank if rank else 0


def ir_dtype(onnx_type: int) -> str:
    try:
        return str(np.dtype(helper.tensor_dtype_to_np_dtype(onnx_type)))
    except (KeyError, TypeError) as e:
        raise ConversionError(f"ONNX element type {onnx_type} is not supported") from e


class Ctx:
    def __init__(self, graph: Graph, opset: int, known_inputs: dict[str, np.ndarray] | None = None) -> None:
        self.graph = graph
        self.opset = opset
        self.known_inputs = known_inputs or {}  # by ONNX name
        self.onnx_input_names: dict[str, str] = {}  # IR input name -> ONNX name
        self.specialized: set[str] = set()  # the known inputs read as constants (ONNX names)
        self.env: dict[str, Any] = {}
        self.origin = ""
        self.materialized: dict[tuple[int, str], Value] = {}

    def get(self, name: str) -> Any:
        """What `name` stands for (None for an omitted optional input "")."""
        if name == "":
            return None
        if name not in self.env:
            raise ConversionError(f"input {name!r} is not produced by any earlier node")
        return self.env[name]

    def input(self, node: OnnxNode, i: int) -> Any:
        return self.get(node.inputs[i]) if i < len(node.inputs) else None

    def value(self, node: OnnxNode, i: int, dtype: str | None = None) -> Value:
        """Input i as an IR tensor; a known array becomes a parameter (of `dtype` when given)."""
        return self.as_value(self.input(node, i), dtype, node.inputs[i] if i < len(node.inputs) else "")

    def as_value(self, v: Any, dtype: str | None = None, name: str = "const") -> Value:
        if isinstance(v, Value):
            return v
        if isinstance(v, Lazy):
            raise ConversionError(f"{name!r} is {v.what}, which recc only accepts where it recognises the pattern")
        if not is_static(v):
            raise ConversionError(f"input {name!r} is missing")
        if is_symbolic(v):
            raise ConversionError(f"{name!r} holds the symbolic sizes {v.tolist()} and is used as data")
        array = np.asarray(v.astype(np.int64) if v.dtype == object else v)
        if dtype is not None:
            array = array.astype(dtype)
        key = (id(v), str(array.dtype))
        if key not in self.materialized:
            self.materialized[key] = self.graph.add_param(name or "const", array)
        return self.materialized[key]

    def derived_param(self, source: Any, how: tuple[Any, ...], name: str, make: Any) -> Value:
        """A parameter computed from an import-time array (a transposed or scaled weight), made once per
        (source, how): an RNN step unrolled into 40 MatMuls on one initializer shares one weight."""
        key = (id(source), how)
        if key not in self.materialized:
            self.materialized[key] = self.graph.add_param(name, make())
        return self.materialized[key]

    def static(self, node: OnnxNode, i: int, what: str) -> np.ndarray | None:
        """Input i as an array known at import time (None when omitted); a tensor input raises."""
        v = self.input(node, i)
        if v is None or is_static(v):
            return v
        if isinstance(v, Value) and v.kind == "param":
            return self.graph.param_array(v)
        if isinstance(v, Value):
            used: set[str] = set()
            missing: set[str] = set()
            array = self._evaluate(v, used, missing, {})
            if array is not None:
                self.specialized |= used
                return array
            if missing:
                raise InputNeededAtImport(f"{what} ({node.inputs[i]!r}) must be a constant, not computed from the "
                                          f"graph input(s) {sorted(missing)}", sorted(missing)[0])
        raise ConversionError(f"{what} ({node.inputs[i]!r}) must be a constant, not a computed tensor")

    def _evaluate(self, v: Value, used: set[str], missing: set[str], memo: dict[int, Any]) -> np.ndarray | None:
        """The array `v` holds, if it is computed (by at most MAX_FOLD_ELEMENTS-element steps) from parameters
        and known inputs alone (their names go to `used`; unknown inputs met go to `missing`), else None."""
        if id(v) in memo:
            return memo[id(v)]
        result = None
        if v.kind == "param":
            result = self.graph.param_array(v)
        elif v.kind == "input":
            name = self.onnx_input_names.get(v.name, v.name)
            if name in self.known_inputs:
                used.add(name)
                result = np.asarray(self.known_inputs[name])
            else:
                missing.add(name)
        elif v.producer is not None and all(isinstance(d, int) for d in v.type.shape) \
                and int(np.prod(v.type.shape, dtype=np.int64)) <= MAX_FOLD_ELEMENTS:
            memo[id(v)] = None
            args = [self._evaluate(a, used, missing, memo) for a in v.producer.inputs]
            if all(a is not None for a in args):
                result = run_node(v.producer, args, {})[v.producer.outputs.index(v)]
        memo[id(v)] = result
        return result

    def ints(self, node: OnnxNode, i: int, what: str) -> list[Dim] | None:
        array = self.static(node, i, what)
        return None if array is None else [d if isinstance(d, Sym) else int(d) for d in np.ravel(array)]

    def emit(self, op: str, inputs: list[Value], **attrs: Any) -> Value:
        return self.graph.add_node(op, inputs, attrs, origin=self.origin).output

    def const(self, value: Any, dtype: str) -> Value:
        return self.graph.add_param("const", np.asarray(value, dtype=dtype))

    def as_dtype(self, v: Value, dtype: str) -> Value:
        return v if v.type.dtype == dtype else self.emit("cast", [v], dtype=dtype)
