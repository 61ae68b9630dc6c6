"""The reference interpreter: numpy semantics for every IR op.

It is the oracle: `--verify` runs it after every pass, and tests compare compiled code against it and
against eager PyTorch. It favours clarity over speed (float64 is never used silently: ops compute in
their tensor's dtype, as the compiled code does).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from recc.compiler.ir import Graph, Node, Value
from recc.compiler.interpreter_math import MATH_KERNELS
from recc.compiler.interpreter_window import WINDOW_KERNELS
from recc.compiler.ir.fused_ops import batched_table_layout
from recc.compiler.ir.spill import release_pages
from recc.compiler.quantize import dense_reference, dequantize_rowwise, round_bf16

Kernel = Callable[[list[np.ndarray], dict[str, Any]], np.ndarray]
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _dense(x: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    """dense before its activation, in its precision (recc/compiler/quantize.py for int8 and bf16; int8
    with the calibrated activation scale and zero point where the node has them)."""
    precision = attrs.get("precision", "fp32")
    if precision != "fp32":
        act = (attrs["act_scale"], attrs["act_zero_point"]) if "act_scale" in attrs else None
        return dense_reference(precision, x[0], x[1], x[2] if len(x) == 3 else None, act)
    return (x[0] @ x[1].T + (x[2] if len(x) == 3 else 0)).astype(x[0].dtype)


def _activation(x: np.ndarray, name: str, attrs: dict[str, Any]) -> np.ndarray:
    if name == "none":
        return x
    if name == "relu":
        return np.maximum(x, 0).astype(x.dtype)
    if name == "sigmoid":
        return (1 / (1 + np.exp(-x))).astype(x.dtype)
    if name == "tanh":
        return np.tanh(x)
    if name == "gelu":  # NaN at +-inf, as torch's CPU kernel
        return np.where(np.isinf(x), np.nan, 0.5 * x * (1 + _erf(x / math.sqrt(2)))).astype(x.dtype)
    if name == "gelu_tanh":
        return (0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))).astype(x.dtype)
    if name == "silu":
        return (x / (1 + np.exp(-x))).astype(x.dtype)
    if name == "leaky_relu":
        return np.where(x > 0, x, x * attrs.get("alpha", 0.01)).astype(x.dtype)
    raise ValueError(f"unknown activation {name}")


def checked_index(ids: np.ndarray, rows: int, wrap: bool = False) -> np.ndarray:
    """`ids` as int64 indices into `rows`, as torch reads them: a gather that wraps (`w[ids]`, `take` with
    wrap) adds `rows` to a negative id once; then every id must lie in 0..rows-1, else IndexError (torch's
    error for the same ids; numpy would wrap a negative id where torch refuses it)."""
    ids = np.asarray(ids).astype(np.int64)
    if wrap:
        ids = np.where(ids < 0, ids + rows, ids)
    if ids.size and (ids.min() < 0 or ids.max() >= rows):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise IndexError(f"index {bad} is out of bounds for a dimension of size {rows}")
    return ids


def _take(xs: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    axis = attrs["axis"] % xs[0].ndim
    return np.take(xs[0], checked_index(xs[1], xs[0].shape[axis], bool(attrs.get("wrap"))), axis=axis)


def _gather(xs: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    x, idx = xs
    axis = attrs["axis"] % x.ndim
    index = checked_index(idx, x.shape[axis])
    x = x[tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(idx.shape))]
    return np.ascontiguousarray(np.take_along_axis(x, index, axis=axis))


def _embedding_bag(xs: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    table, ids = xs[0], checked_index(xs[1], xs[0].shape[0])
    weights = xs[-1] if attrs.get("has_weights") else None
    if attrs["layout"] == "fixed":
        rows = table[ids]  # [B, L, D]
        if weights is not None:
            rows = rows * weights[..., None]
        out = rows.sum(axis=1)
        if attrs["mode"] == "mean" and ids.shape[1]:
            out = out / ids.shape[1]
        return out.astype(table.dtype)
    offsets = xs[2].astype(np.int64)
    ends = offsets[1:] if attrs.get("include_last_offset") else np.append(offsets[1:], len(ids))
    starts = offsets[:-1] if attrs.get("include_last_offset") else offsets
    out = np.zeros((len(starts), table.shape[1]), table.dtype)
    for b, (s, e) in enumerate(zip(starts, ends)):
        rows = table[ids[s:e]]
        if weights is not None:
            rows = rows * weights[s:e, None]
        if e > s:
            out[b] = rows.sum(axis=0) / (e - s if attrs["mode"] == "mean" else 1)
    return out


def _batched_embedding_bag(xs: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    weights, ids = xs[0], xs[1]
    outs = []
    precision = attrs.get("table_precision", "fp32")
    for rows, dim, bag, col, offset, _ in batched_table_layout(attrs):
        table, cols = weights[offset:offset + rows * dim].reshape(rows, dim), ids[:, col:col + bag]
        if precision != "fp32":  # only the rows looked up: each row is rounded on its own (GB tables stay as are)
            used, cols = np.unique(checked_index(cols, rows), return_inverse=True)
            table = dequantize_rowwise(table[used]) if precision == "int8" else round_bf16(table[used])
            cols = cols.reshape(len(ids), bag)
        extra = [xs[2][:, col:col + bag]] if attrs.get("has_weights") else []
        outs.append(_embedding_bag([table, cols] + extra, dict(attrs, layout="fixed")))
        release_pages(weights, offset, rows * dim)  # random rows fault most of a spilled table in
    return np.concatenate(outs, axis=1)


def _dot_interaction(xs: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    x, features = xs
    z = np.concatenate([x[:, None, :], features.reshape(len(x), -1, x.shape[1])], axis=1)
    li, lj = np.tril_indices(z.shape[1], -1)
    return np.concatenate([x, np.matmul(z, z.transpose(0, 2, 1))[:, li, lj]], axis=1).astype(x.dtype)


def _target_attention(xs: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    keys, query = xs[0], xs[1]
    bias = xs[2] if attrs.get("has_score_bias") else 0.0
    layers = xs[2 + bool(attrs.get("has_score_bias")):]
    q = np.broadcast_to(query[:, None, :], keys.shape)
    h = np.concatenate([keys, q, keys * q], axis=2)
    for i, act in enumerate(list(attrs["activations"]) + ["none"]):
        h = _activation(h @ layers[2 * i].T + layers[2 * i + 1], act, {})
    weights = _softmax(h[..., 0] + bias, 1)
    return (weights[..., None] * keys).sum(axis=1).astype(keys.dtype)


def _attention(xs: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    q, k, v = xs[:3]
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) * np.float32(attrs["scale"])
    if len(xs) == 4:
        scores = scores + xs[3]
    return np.matmul(_softmax(scores, -1), v).astype(q.dtype)


def _recurrent(xs: list[np.ndarray], attrs: dict[str, Any], has_scores: bool) -> np.ndarray:
    """gru / augru: PyTorch's GRU step from projected inputs x [B, L, 3H]; AUGRU scales z by the score."""
    x, (w_hh, b_hh) = xs[0], xs[1 + has_scores:]
    hidden = w_hh.shape[1]
    h = np.zeros((x.shape[0], hidden), x.dtype)
    out = np.empty((x.shape[0], x.shape[1], hidden), x.dtype)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))
    for t in range(x.shape[1]):
        g = h @ w_hh.T + b_hh
        r = sigmoid(x[:, t, :hidden] + g[:, :hidden])
        z = sigmoid(x[:, t, hidden:2 * hidden] + g[:, hidden:2 * hidden])
        n = np.tanh(x[:, t, 2 * hidden:] + r * g[:, 2 * hidden:])
        h = (h + z * xs[1][:, t, None] * (n - h)) if has_scores else (n + z * (h - n))
        out[:, t] = h
    return out


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _slice(x: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    index = [slice(None)] * x.ndim
    index[a["axis"]] = slice(a["start"], a["end"], a.get("step", 1))
    return x[tuple(index)]


KERNELS: dict[str, Kernel] = {
    "relu": lambda x, a: np.maximum(x[0], 0).astype(x[0].dtype),
    "sigmoid": lambda x, a: _activation(x[0], "sigmoid", a),
    "tanh": lambda x, a: np.tanh(x[0]),
    "exp": lambda x, a: np.exp(x[0]),
    "log": lambda x, a: np.log(x[0]),
    "neg": lambda x, a: -x[0],
    "sqrt": lambda x, a: np.sqrt(x[0]),
    "rsqrt": lambda x, a: (1 / np.sqrt(x[0])).astype(x[0].dtype),
    "abs": lambda x, a: np.abs(x[0]),
    "reciprocal": lambda x, a: (1 / x[0]).astype(x[0].dtype),
    "erf": lambda x, a: _erf(x[0]).astype(x[0].dtype),
    "gelu": lambda x, a: _activation(x[0], "gelu_tanh" if a.get("approximate") == "tanh" else "gelu", a),
    "silu": lambda x, a: _activation(x[0], "silu", a),
    "leaky_relu": lambda x, a: _activation(x[0], "leaky_relu", a),
    "clamp": lambda x, a: np.clip(x[0], a.get("min"), a.get("max")).astype(x[0].dtype),
    "logical_not": lambda x, a: np.logical_not(x[0]),
    "add": lambda x, a: x[0] + x[1],
    "sub": lambda x, a: x[0] - x[1],
    "mul": lambda x, a: x[0] * x[1],
    "div": lambda x, a: (x[0] / x[1]).astype(x[0].dtype),
    "maximum": lambda x, a: np.maximum(x[0], x[1]),
    "minimum": lambda x, a: np.minimum(x[0], x[1]),
    "pow": lambda x, a: np.power(x[0], x[1]),
    "gt": lambda x, a: x[0] > x[1],
    "ge": lambda x, a: x[0] >= x[1],
    "lt": lambda x, a: x[0] < x[1],
    "le": lambda x, a: x[0] <= x[1],
    "eq": lambda x, a: x[0] == x[1],
    "ne": lambda x, a: x[0] != x[1],
    "where": lambda x, a: np.where(x[0], x[1], x[2]),
    "dense": lambda x, a: _activation(_dense(x, a), a.get("activation", "none"), a),
    "matmul": lambda x, a: np.matmul(x[0], x[1]),
    "softmax": lambda x, a: _softmax(x[0], a["axis"]),
    "log_softmax": lambda x, a: np.log(_softmax(x[0], a["axis"])),
    "concat": lambda x, a: np.concatenate(x, axis=a["axis"]),
    "reshape": lambda x, a: x[0].reshape(a["_shape"]),
    "permute": lambda x, a: np.ascontiguousarray(np.transpose(x[0], a["perm"])),
    "slice": lambda x, a: np.ascontiguousarray(_slice(x[0], a)),
    "take": _take,
    "gather": _gather,
    "expand": lambda x, a: np.ascontiguousarray(np.broadcast_to(x[0], a["_shape"])),
    "sum": lambda x, a: x[0].sum(axis=tuple(a["axes"]), keepdims=a.get("keepdims", False)).astype(x[0].dtype),
    "mean": lambda x, a: x[0].mean(axis=tuple(a["axes"]), keepdims=a.get("keepdims", False)).astype(x[0].dtype),
    "max": lambda x, a: x[0].max(axis=tuple(a["axes"]), keepdims=a.get("keepdims", False)),
    "min": lambda x, a: x[0].min(axis=tuple(a["axes"]), keepdims=a.get("keepdims", False)),
    "cast": lambda x, a: x[0].astype(a["dtype"]),
    "embedding": lambda x, a: x[0][checked_index(x[1], x[0].shape[0])],
    "embedding_bag": _embedding_bag,
    "batched_embedding_bag": _batched_embedding_bag,
    "dot_interaction": _dot_interaction,
    "target_attention": _target_attention,
    "attention": _attention,
    "gru": lambda x, a: _recurrent(x, a, has_scores=False),
    "augru": lambda x, a: _recurrent(x, a, has_scores=True),
    **MATH_KERNELS,
    **WINDOW_KERNELS,
}


def _bind_symbols(graph: Graph, inputs: list[np.ndarray]) -> dict[str, int]:
    env: dict[str, int] = {}
    for value, array in zip(graph.inputs, inputs):
        for d, n in zip(value.type.shape, array.shape):
            if not isinstance(d, int) and len(d.names) == 1 and d.names[0] not in env:
                env[d.names[0]] = n // d.coef
    return env


def run_node(node: Node, args: list[np.ndarray], env: dict[str, int]) -> list[np.ndarray]:
    kernel = KERNELS.get(node.op)
    if kernel is None:
        raise NotImplementedError(f"the reference interpreter has no semantics for op {node.op!r}")
    attrs = node.attrs
    if node.op in ("reshape", "expand"):
        attrs = dict(attrs, _shape=node.output.type.bind(env))
    out = kernel(args, attrs)
    return list(out) if isinstance(out, tuple) else [np.asarray(out)]


def interpret(graph: Graph, inputs: list[np.ndarray],
              observe: Callable[[Node, list[np.ndarray]], None] | None = None) -> list[np.ndarray]:
    """Run `graph` on numpy `inputs` (in graph.inputs order) and return its outputs; `observe(node,
    its input arrays)` is called before each node runs (calibration reads activations through it)."""
    if len(inputs) != len(graph.inputs):
        raise ValueError(f"graph takes {len(graph.inputs)} inputs, got {len(inputs)}")
    env = _bind_symbols(graph, inputs)
    values: dict[int, np.ndarray] = {id(v): a for v, a in zip(graph.inputs, inputs)}
    for name, v in graph.param_values.items():  # a spilled (memory-mapped) buffer stays one: see release_pages
        param = graph.params[name]
        values[id(v)] = param if isinstance(param, np.ndarray) else np.asarray(param)
    for node in graph.nodes:
        args = [values[id(v)] for v in node.inputs]
        if observe is not None:
            observe(node, args)
        outs = run_node(node, args, env)
        for v, a in zip(node.outputs, outs):
            values[id(v)] = a
    return [values[id(v)] for v in graph.outputs]


def constant_value(graph: Graph, value: Value, max_elements: int = 1 << 16, max_nodes: int = 64) -> np.ndarray | None:
    """The array `value` holds whatever the inputs are, if it is computed from parameters alone (a
    parameter, or an expression of them with a static shape, every step at most `max_elements` and at most
    `max_nodes` nodes); else None. Passes read constants through it that frontends spell as small
    expressions (BatchNorm's 1 / sqrt(var + eps), addmm's beta * bias)."""
    memo: dict[int, np.ndarray | None] = {}

    def evaluate(v: Value) -> np.ndarray | None:
        if id(v) in memo:
            return memo[id(v)]
        result: np.ndarray | None = None
        if v.kind == "param":
            result = np.asarray(graph.params[v.name])
        elif v.producer is not None and len(memo) < max_nodes and all(isinstance(d, int) for d in v.type.shape) \
                and int(np.prod(v.type.shape, dtype=np.int64)) <= max_elements and v.producer.op in KERNELS:
            memo[id(v)] = None  # guards against revisiting while evaluating
            args = [evaluate(a) for a in v.producer.inputs]
            if all(a is not None for a in args):
                result = run_node(v.producer, args, {})[v.producer.outputs.index(v)]  # type: ignore[arg-type]
        memo[id(v)] = result
        return result

    return evaluate(value)

