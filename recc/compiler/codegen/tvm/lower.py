"""IR graph -> TVM Relax module.

Ops that carry the time in recommendation models (dense layers, embedding lookups) are emitted as calls
to recc's own hand-scheduled TIR kernels (kernels/); the remaining small ops go through Relax's
operators and TVM's default legalization. The Relax function takes the user inputs first, then every
weight as a runtime argument (embedding tables are never constants in the library); only tiny constants
(index lists, scalars) are embedded.

Weights may be re-laid out for their kernel (a dense weight is pre-packed); `Lowered.weights` holds the
arrays in the order the function expects them, under their (possibly new) names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import tvm
from tvm import relax
from tvm import tirx as tir

from recc.compiler.ir import Graph, Node, Value
from recc.compiler.ir.fused_ops import batched_table_layout
from recc.compiler.ir.types import Dim
from recc.compiler.codegen.tvm.kernels import dense as dense_kernels

INLINE_CONSTANT_LIMIT = 64  # elements; larger parameters are runtime arguments


@dataclass
class Lowered:
    module: tvm.IRModule
    input_names: list[str]
    weight_names: list[str]
    weights: dict[str, np.ndarray]
    kernels: dict[str, int] = field(default_factory=dict)  # which kernel families were used, for reports
    checked_inputs: list[str] = field(default_factory=list)  # ids inputs range-checked inside the function
    # functions besides "main" specialized to static values of the shape symbols, e.g. {"main_b1": {"batch": 1}}
    specialized: dict[str, dict[str, int]] = field(default_factory=dict)


class _Lowering:
    def __init__(self, graph: Graph, tuner: Any = None, id_limits: dict[str, list[list[Any]]] | None = None,
                 dense_tile: tuple[int, int] = (dense_kernels.ROWS, dense_kernels.VECTOR)) -> None:
        self.graph = graph
        self.tuner = tuner
        self.dense_tile = dense_tile
        self.id_limits = id_limits or {}
        self.checked_inputs: list[str] = []
        self.bb = relax.BlockBuilder()
        self.symbols: dict[str, Any] = {}  # shape symbol -> tir.Var, or an IntImm where specialized
        self.exprs: dict[int, relax.Expr] = {}
        self.weights: dict[str, np.ndarray] = {}
        self.weight_by_name: dict[str, relax.Var] = {}
        self.kernel_cache: dict[tuple[Any, ...], Any] = {}
        self.kernels: dict[str, int] = {}
        self.counting = True  # kernel counts and checked inputs are reported for "main" only

    # -- shapes -------------------------------------------------------------------------------------
    def dim(self, d: Dim) -> Any:
        if isinstance(d, int):
            return tir.IntImm("int64", d)
        expr: Any = tir.IntImm("int64", d.coef)
        for name in d.names:
            if name not in self.symbols:
                self.symbols[name] = tir.Var(name, "int64")
            expr = expr * self.symbols[name]
        return expr

    def struct(self, value: Value) -> relax.TensorType:
        return relax.TensorType([self.dim(d) for d in value.type.shape], value.type.dtype)

    # -- weights ------------------------------------------------------------------------------------
    def weight(self, name: str, make: Callable[[], np.ndarray]) -> relax.Var:
        """The runtime argument `name`, created once: a weight shared by several nodes (an RNN cell
        unrolled over time steps) is packed and passed once."""
        if name not in self.weight_by_name:
            array = self.weights[name] if name in self.weights else make()  # packed once for all functions
            var = relax.Var(name, relax.TensorType(list(array.shape), str(array.dtype)))
            self.weights[name] = array
            self.weight_by_name[name] = var
        return self.weight_by_name[name]

    def expr(self, value: Value) -> relax.Expr:
        key = id(value)
        if key not in self.exprs:
            array = self.graph.param_array(value)
            assert array is not None, f"value %{value.name} used before definition"
            if array.size <= INLINE_CONSTANT_LIMIT:
                self.exprs[key] = relax.const(np.asarray(array), str(array.dtype))
            else:
                self.exprs[key] = self.weight(value.name, lambda: array)
        return self.exprs[key]

    def kernel(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        if key not in self.kernel_cache:
            self.kernel_cache[key] = self.bb.add_func(make(), f"{key[0]}_{len(self.kernel_cache)}")
        if self.counting:
            self.kernels[key[0]] = self.kernels.get(key[0], 0) + 1
        return self.kernel_cache[key]

    # -- driver -------------------------------------------------------------------------------------
    def run(self, specialize: dict[str, dict[str, int]] | None = None) -> Lowered:
        self.function("main", {})
        self.counting = False
        for name, values in (specialize or {}).items():
            self.function(name, values)
        return Lowered(self.bb.get(), [v.name for v in self.graph.inputs], list(self.weights), self.weights,
                       self.kernels, self.checked_inputs, dict(specialize or {}))

    def function(self, name: str, static: dict[str, int]) -> None:
        """Emit one Relax function of the graph: shape symbols in `static` are constants in it (a static
        shape lets the VM skip shape arithmetic and plan memory once: batch 1 runs 1.5-12 us faster), the
        others symbolic. Kernels and packed weights are shared between functions; every function takes
        the weights in the same order."""
        self.symbols = {sym: tir.IntImm("int64", value) for sym, value in static.items()}
        self.exprs, self.weight_by_name = {}, {}
        inputs = []
        for v in self.graph.inputs:
            var = relax.Var(v.name, self.struct(v))
            self.exprs[id(v)] = var
            inputs.append(var)
        # Weights are discovered while lowering; the function's parameter list is closed afterwards.
        with self.bb.function(name):
            with self.bb.dataflow():
                for v in self.graph.inputs:
                    self._check_ids(v)
                for node in self.graph.nodes:
                    out = LOWERINGS.get(node.op, _lower_generic)(self, node)
                    self.exprs[id(node.output)] = out
                results = [self.expr(v) if v.kind == "param" else self.exprs[id(v)] for v in self.graph.outputs]
                result = results[0] if len(results) == 1 else relax.Tuple(results)
                gv = self.bb.emit_output(result)
            # every function takes all weights, in the order "main" discovered them
            weights = [self.weight(name, lambda: self.weights[name]) for name in list(self.weights)]
            self.bb.emit_func_output(gv, params=inputs + weights)

    def _check_ids(self, value: Value) -> None:
        """Range-check an ids input first thing in the function (kernels/checks.py), if its limits lie along
        one static axis (or cover it whole); every consumer then reads the check's in-place result, so the
        check runs before any gather. Other limits stay with the runtime's check before the call."""
        from recc.compiler.codegen.tvm.kernels.checks import id_range_check

        limits, shape = self.id_limits.get(value.name), value.type.shape
        if not limits or value.type.dtype != "int64" or len({lim[0] for lim in limits}) != 1:
            return
        axis = limits[0][0]
        if axis is None:
            bounds = np.array([min(lim[3] for lim in limits)], np.int64)
        elif isinstance(shape[axis], int):
            bounds = np.full(shape[axis], -1, np.int64)  # -1: as unsigned, no limit (not an id column)
            for _, start, end, rows in limits:
                part = bounds[start:end]
                bounds[start:end] = np.where(part < 0, rows, np.minimum(part, rows))
        else:
            return
        fn = self.kernel(("check_ids", len(shape), axis, len(bounds)),
                         lambda: id_range_check(len(shape), axis, len(bounds)))
        var = self.exprs[id(value)]
        self.exprs[id(value)] = self.emit(relax.call_tir_inplace(fn, [var, relax.const(bounds, "int64")], 0,
                                                                 self.struct(value)))
        if self.counting:
            self.checked_inputs.append(value.name)

    def emit(self, expr: relax.Expr) -> relax.Expr:
        return self.bb.emit(expr)

    def args(self, node: Node) -> list[relax.Expr]:
        return [self.expr(v) if v.kind == "param" else self.exprs[id(v)] for v in node.inputs]


# -- the ops that get recc kernels ----------------------------------------------------------------------
def _lower_dense(lw: _Lowering, node: Node) -> relax.Expr:
    x, w = node.inputs[0], node.inputs[1]
    n, k = w.type.shape
    w_array = lw.graph.param_array(w)
    if w_array is None or w.type.dtype != "float32":
        return _lower_dense_generic(lw, node)
    b_array = lw.graph.param_array(node.inputs[2]) if len(node.inputs) == 3 else np.zeros(n, np.float32)
    if b_array is None:
        return _lower_dense_generic(lw, node)
    activation, alpha = node.attrs.get("activation", "none"), node.attrs.get("alpha", 0.01)
    rows, vector = dense_kernels.tile_for(n, lw.dense_tile)
    params = {"rows": rows, "vector": vector, **_tuned_dense(lw, k, n, activation, alpha, rows, vector)}
    fn = lw.kernel(("dense", k, n, activation, alpha, tuple(sorted(params.items()))),
                   lambda: dense_kernels.dense_kernel(k, n, activation, alpha, **params))
    packed = lw.weight(f"{w.name}__packed{vector}", lambda: dense_kernels.pack_weight(np.asarray(w_array), vector))
    bias_name = f"{node.inputs[2].name}__bias" if len(node.inputs) == 3 else f"zeros{n}__bias"
    bias = lw.weight(bias_name, lambda: np.ascontiguousarray(b_array, dtype=np.float32))
    xe = lw.exprs[id(x)] if x.kind != "param" else lw.expr(x)
    lead = x.type.shape[:-1]
    if len(lead) != 1:
        flat_m = lw.dim(lead[0])
        for d in lead[1:]:
            flat_m = flat_m * lw.dim(d)
        xe = lw.emit(relax.op.reshape(xe, [flat_m, lw.dim(k)]))
        out = lw.emit(relax.call_tir(fn, [xe, packed, bias], relax.TensorType([flat_m, lw.dim(n)], "float32")))
        return lw.emit(relax.op.reshape(out, [lw.dim(d) for d in node.output.type.shape]))
    return lw.emit(relax.call_tir(fn, [xe, packed, bias], lw.struct(node.output)))


def _tuned_dense(lw: _Lowering, k: int, n: int, activation: str, alpha: float, rows: int, vector: int) -> dict[str, Any]:
    if lw.tuner is None:
        return {}
    from recc.compiler.codegen.tvm.tuning import DENSE_ROW_BLOCKS, time_kernel

    rng = np.random.default_rng(0)

    def measure(params: dict[str, Any]) -> float:
        kernel = dense_kernels.dense_kernel(k, n, activation, alpha, rows=rows, vector=vector, **params)
        return time_kernel(kernel, lw.tuner.target, lambda: [
            rng.random((256, k), dtype=np.float32),
            dense_kernels.pack_weight(rng.random((n, k), dtype=np.float32), vector),
            rng.random(n, dtype=np.float32), np.zeros((256, n), np.float32)])

    grid = [{"row_block": rb} for rb in DENSE_ROW_BLOCKS if rb != dense_kernels.default_row_block(k, n)]
    return lw.tuner.params("dense", f"{k}x{n}:{activation}", {"grid": grid}, measure)


def _lower_dense_generic(lw: _Lowering, node: Node) -> relax.Expr:
    args = lw.args(node)
    out = relax.op.matmul(args[0], relax.op.permute_dims(args[1], [1, 0]))
    if len(args) == 3:
        out = relax.op.add(out, args[2])
    act = node.attrs.get("activation", "none")
    return lw.emit(_ACTIVATIONS[act](out, node.attrs) if act != "none" else out)


def _lower_embedding_bag(lw: _Lowering, node: Node) -> relax.Expr:
    from recc.compiler.codegen.tvm.kernels import embedding as embedding_kernels

    table = node.inputs[0]
    rows, dim = table.type.shape
    attrs = node.attrs
    has_weights = bool(attrs.get("has_weights"))
    if attrs["layout"] == "fixed":
        bag = node.inputs[1].type.shape[1]
        key = ("embedding_bag_fixed", rows, dim, bag, attrs["mode"], has_weights)
        fn = lw.kernel(key, lambda: embedding_kernels.embedding_bag_fixed(rows, dim, bag, attrs["mode"], has_weights))
    else:
        key = ("embedding_bag_offsets", rows, dim, attrs["mode"], has_weights, bool(attrs.get("include_last_offset")))
        fn = lw.kernel(key, lambda: embedding_kernels.embedding_bag_offsets(
            rows, dim, attrs["mode"], has_weights, bool(attrs.get("include_last_offset"))))
    return lw.emit(relax.call_tir(fn, lw.args(node), lw.struct(node.output)))


def _segments(attrs: dict[str, Any]) -> tuple[Any, ...]:
    """The batched lookup's tables as kernel segments: maximal runs of consecutive tables with the same
    dim and bag size (DLRM: one; Wide&Deep: deep tables, then wide tables)."""
    from recc.compiler.codegen.tvm.kernels.embedding import Segment

    runs: list[list[tuple[int, ...]]] = []
    for table in batched_table_layout(attrs):
        if runs and runs[-1][0][1:3] == table[1:3]:
            runs[-1].append(table)
        else:
            runs.append([table])
    return tuple(Segment(tuple(t[0] for t in run), run[0][1], run[0][2], tuple(t[3] for t in run),
                         out_col=run[0][5], weight_offset=run[0][4]) for run in runs)


def _lower_batched_embedding_bag(lw: _Lowering, node: Node) -> relax.Expr:
    from recc.compiler.codegen.tvm.kernels import embedding as embedding_kernels

    attrs = node.attrs
    segments = _segments(attrs)
    ids_width = node.inputs[1].type.shape[1]
    has_weights = bool(attrs.get("has_weights"))
    schedule = _tuned_gather(lw, node, segments, ids_width)
    key = ("batched_embedding_bag", segments, ids_width, attrs["mode"], has_weights, schedule)
    fn = lw.kernel(key, lambda: embedding_kernels.batched_embedding_bag(
        segments, ids_width, attrs["mode"], has_weights, schedule))
    return lw.emit(relax.call_tir(fn, lw.args(node), lw.struct(node.output)))


TUNE_GATHER_MAX_ELEMENTS = 64 << 20  # larger flat tables are not copied for a tuning run


def _tuned_gather(lw: _Lowering, node: Node, segments: tuple[Any, ...], ids_width: int) -> Any:
    from recc.compiler.codegen.tvm.kernels.embedding import DEFAULT_SCHEDULE, GatherSchedule, batched_embedding_bag

    attrs, weights = node.attrs, node.inputs[0]
    if lw.tuner is None:
        return DEFAULT_SCHEDULE
    from recc.compiler.codegen.tvm.tuning import PREFETCH_DISTANCES, time_kernel

    total = weights.type.shape[0]
    rng = np.random.default_rng(0)

    def arguments() -> list[np.ndarray]:
        ids = np.zeros((256, ids_width), np.int64)
        for rows, _, bag, col, _, _ in batched_table_layout(attrs):
            ids[:, col:col + bag] = rng.integers(0, rows, (256, bag))
        out = np.zeros((256, sum(attrs["table_dims"])), np.float32)
        extra = [rng.random((256, ids_width), dtype=np.float32)] if attrs.get("has_weights") else []
        return [rng.random(total, dtype=np.float32), ids, *extra, out]

    def measure(params: dict[str, Any]) -> float:
        schedule = GatherSchedule(**params) if params else DEFAULT_SCHEDULE
        func = batched_embedding_bag(segments, ids_width, attrs["mode"], bool(attrs.get("has_weights")), schedule)
        return time_kernel(func, lw.tuner.target, arguments)

    if total > TUNE_GATHER_MAX_ELEMENTS:
        return DEFAULT_SCHEDULE
    shape = f"{len(attrs['table_rows'])}t:{sum(attrs['table_rows'])}r:{ids_width}i:{attrs['mode']}"
    params = lw.tuner.params("batched_embedding_bag", shape,
                             {"grid": [{"prefetch_distance": d} for d in PREFETCH_DISTANCES]}, measure)
    return GatherSchedule(**params) if params else DEFAULT_SCHEDULE


def _lower_dot_interaction(lw: _Lowering, node: Node) -> relax.Expr:
    from recc.compiler.codegen.tvm.kernels.interaction import dot_interaction

    dim = node.inputs[0].type.shape[1]
    features = node.inputs[1].type.shape[1] // dim
    fn = lw.kernel(("dot_interaction", dim, features), lambda: dot_interaction(dim, features))
    return lw.emit(relax.call_tir(fn, lw.args(node), lw.struct(node.output)))


def _lower_target_attention(lw: _Lowering, node: Node) -> relax.Expr:
    from recc.compiler.codegen.tvm.kernels import attention

    keys = node.inputs[0]
    has_bias = bool(node.attrs.get("has_score_bias"))
    params = [np.asarray(lw.graph.param_array(v), np.float32) for v in node.inputs[2 + has_bias:]]
    _, seq, dim = keys.type.shape
    widths = tuple(int(w.shape[0]) for w in params[0::2])
    activations = tuple(node.attrs["activations"])
    fn = lw.kernel(("target_attention", seq, dim, widths, activations, has_bias),
                   lambda: attention.target_attention(seq, dim, widths, activations, has_bias))
    w1q, w1u = attention.pack_first_layer(params[0], dim)
    w_all, b_all = attention.pack_hidden_layers(w1u, list(zip(params[2:-2:2], params[3:-2:2])))
    name = node.output.name
    packed = [lw.weight(f"{name}__w1q", lambda: w1q), lw.weight(f"{name}__b1", lambda: attention.pad_vector(params[1])),
              lw.weight(f"{name}__w_all", lambda: w_all), lw.weight(f"{name}__b_all", lambda: b_all),
              lw.weight(f"{name}__w_last", lambda: params[-2].reshape(-1).copy()),
              lw.weight(f"{name}__b_last", lambda: params[-1].reshape(-1).copy())]
    data = [lw.expr(v) if v.kind == "param" else lw.exprs[id(v)] for v in node.inputs[:2 + has_bias]]
    return lw.emit(relax.call_tir(fn, data + packed, lw.struct(node.output)))


def _lower_attention(lw: _Lowering, node: Node) -> relax.Expr:
    """[..., L, d] operands viewed as [g, L, d] (g = the leading dims' product; any bias broadcast first)."""
    from recc.compiler.codegen.tvm.kernels import attention

    q, k, v = node.inputs[:3]
    if q.type.dtype != "float32" or any(not isinstance(d, int) for t in (q, k, v) for d in t.type.shape[-2:]):
        raise NotImplementedError("codegen: attention needs float32 and static sequence/head dims")
    lead = q.type.shape[:-2]
    groups = lw.dim(lead[0])
    for d in lead[1:]:
        groups = groups * lw.dim(d)
    (lq, dim), (lk, dv) = q.type.shape[-2:], v.type.shape[-2:]
    args = lw.args(node)
    views = [lw.emit(relax.op.reshape(a, [groups, lw.dim(t.type.shape[-2]), lw.dim(t.type.shape[-1])]))
             for a, t in zip(args[:3], (q, k, v))]
    if len(args) == 4:
        full = [lw.dim(d) for d in q.type.shape[:-1]] + [lw.dim(lk)]
        views.append(lw.emit(relax.op.reshape(relax.op.broadcast_to(args[3], full), [groups, lw.dim(lq), lw.dim(lk)])))
    scale = float(node.attrs["scale"])
    fn = lw.kernel(("attention", lq, lk, dim, dv, scale, len(args) == 4),
                   lambda: attention.scaled_dot_product_attention(lq, lk, dim, dv, scale, len(args) == 4))
    out = lw.emit(relax.call_tir(fn, views, relax.TensorType([groups, lw.dim(lq), lw.dim(dv)], "float32")))
    return lw.emit(relax.op.reshape(out, [lw.dim(d) for d in node.output.type.shape]))


def _lower_recurrent(lw: _Lowering, node: Node) -> relax.Expr:
    """gru / augru: the hidden weights packed [3H/16, H, 16] as for dense, the bias padded to match."""
    from recc.compiler.codegen.tvm.kernels import attention, recurrent

    w_hh, b_hh = node.inputs[-2], node.inputs[-1]
    w_array, b_array = lw.graph.param_array(w_hh), lw.graph.param_array(b_hh)
    if w_array is None or b_array is None:
        raise NotImplementedError(f"codegen: {node.op} needs its hidden weights and bias as parameters")
    length, hidden = node.inputs[0].type.shape[1], w_hh.type.shape[1]
    fn = lw.kernel((f"{node.op}_sequence", length, hidden), lambda: recurrent.gru_sequence(length, hidden, node.op))
    packed = lw.weight(f"{w_hh.name}__packed", lambda: dense_kernels.pack_weight(np.asarray(w_array, np.float32)))
    bias = lw.weight(f"{b_hh.name}__padded", lambda: attention.pad_vector(np.asarray(b_array, np.float32)))
    data = [lw.expr(v) if v.kind == "param" else lw.exprs[id(v)] for v in node.inputs[:-2]]
    return lw.emit(relax.call_tir(fn, data + [packed, bias], lw.struct(node.output)))


def _lower_embedding(lw: _Lowering, node: Node) -> relax.Expr:
    """Plain lookups (DIN's behaviour sequence) through recc's prefetching gather kernel on flat ids."""
    from recc.compiler.codegen.tvm.kernels import embedding as embedding_kernels

    table, ids = node.inputs
    rows, dim = table.type.shape
    if table.type.dtype != "float32" or ids.type.dtype != "int64":
        table_e, ids_e = lw.args(node)
        return lw.emit(relax.op.take(table_e, ids_e, axis=0, mode="clip"))  # ids were range-checked
    fn = lw.kernel(("embedding_lookup", rows, dim), lambda: embedding_kernels.embedding_lookup(rows, dim))
    table_e, ids_e = lw.args(node)
    count = lw.dim(ids.type.shape[0])
    for d in ids.type.shape[1:]:
        count = count * lw.dim(d)
    flat = lw.emit(relax.op.reshape(ids_e, [count])) if ids.type.rank != 1 else ids_e
    out = lw.emit(relax.call_tir(fn, [table_e, flat], relax.TensorType([count, lw.dim(dim)], "float32")))
    return lw.emit(relax.op.reshape(out, [lw.dim(d) for d in node.output.type.shape]))


# -- everything else: Relax operators --------------------------------------------------------------------
_ACTIVATIONS: dict[str, Callable[[relax.Expr, dict[str, Any]], relax.Expr]] = {
    "relu": lambda x, a: relax.op.nn.relu(x),
    "sigmoid": lambda x, a: relax.op.sigmoid(x),
    "tanh": lambda x, a: relax.op.tanh(x),
    "gelu": lambda x, a: relax.op.nn.gelu(x),
    "gelu_tanh": lambda x, a: relax.op.nn.gelu_tanh(x),
    "silu": lambda x, a: relax.op.nn.silu(x),
    "leaky_relu": lambda x, a: relax.op.nn.leakyrelu(x, a.get("alpha", 0.01)),
}

_SIMPLE: dict[str, Callable[..., relax.Expr]] = {
    "add": relax.op.add, "sub": relax.op.subtract, "mul": relax.op.multiply, "div": relax.op.divide,
    "maximum": relax.op.maximum, "minimum": relax.op.minimum, "pow": relax.op.power,
    "gt": relax.op.greater, "ge": relax.op.greater_equal, "lt": relax.op.less, "le": relax.op.less_equal,
    "eq": relax.op.equal, "ne": relax.op.not_equal, "where": relax.op.where,
    "exp": relax.op.exp, "log": relax.op.log, "neg": relax.op.negative, "sqrt": relax.op.sqrt,
    "rsqrt": relax.op.rsqrt, "abs": relax.op.abs, "erf": relax.op.erf, "logical_not": relax.op.logical_not,
    "matmul": relax.op.matmul,
}


def _lower_generic(lw: _Lowering, node: Node) -> relax.Expr:
    args, a, op = lw.args(node), node.attrs, node.op
    out_shape = [lw.dim(d) for d in node.output.type.shape]
    if op in _SIMPLE:
        return lw.emit(_SIMPLE[op](*args))
    if op in _ACTIVATIONS:
        name = "gelu_tanh" if op == "gelu" and a.get("approximate") == "tanh" else op
        return lw.emit(_ACTIVATIONS[name](args[0], a))
    if op == "reciprocal":
        return lw.emit(relax.op.divide(relax.const(1.0, node.output.type.dtype), args[0]))
    if op == "clamp":
        lo = -np.inf if a.get("min") is None else a["min"]
        hi = np.inf if a.get("max") is None else a["max"]
        return lw.emit(relax.op.clip(args[0], lo, hi))
    if op == "softmax":
        return lw.emit(relax.op.nn.softmax(args[0], axis=a["axis"]))
    if op == "log_softmax":
        return lw.emit(relax.op.nn.log_softmax(args[0], axis=a["axis"]))
    if op == "concat":
        return lw.emit(relax.op.concat(args, axis=a["axis"]))
    if op == "reshape":
        return lw.emit(relax.op.reshape(args[0], out_shape))
    if op == "permute":
        return lw.emit(relax.op.permute_dims(args[0], list(a["perm"])))
    if op == "slice":
        size = node.inputs[0].type.shape[a["axis"]]
        end = a["end"] if a["end"] is not None else size
        return lw.emit(relax.op.strided_slice(args[0], [a["axis"]], [a["start"]], [lw.dim(end) if not isinstance(end, int) else end],
                                              [a.get("step", 1)]))
    if op == "take":
        return lw.emit(relax.op.take(args[0], args[1], axis=a["axis"], mode="clip"))
    if op == "expand":
        return lw.emit(relax.op.broadcast_to(args[0], out_shape))
    if op in ("sum", "mean", "max", "min"):
        fn = {"sum": relax.op.sum, "mean": relax.op.mean, "max": relax.op.max, "min": relax.op.min}[op]
        return lw.emit(fn(args[0], axis=list(a["axes"]), keepdims=a.get("keepdims", False)))
    if op == "cast":
        return lw.emit(relax.op.astype(args[0], a["dtype"]))
    raise NotImplementedError(f"codegen: no lowering for op {op!r}")


LOWERINGS: dict[str, Callable[[_Lowering, Node], relax.Expr]] = {
    "dense": _lower_dense,
    "embedding_bag": _lower_embedding_bag,
    "embedding": _lower_embedding,
    "batched_embedding_bag": _lower_batched_embedding_bag,
    "dot_interaction": _lower_dot_interaction,
    "target_attention": _lower_target_attention,
    "attention": _lower_attention,
    "gru": _lower_recurrent,
    "augru": _lower_recurrent,
}


def lower(graph: Graph, tuner: Any = None, id_limits: dict[str, list[list[Any]]] | None = None,
          specialize: dict[str, dict[str, int]] | None = None,
          dense_tile: tuple[int, int] = (dense_kernels.ROWS, dense_kernels.VECTOR)) -> Lowered:
    """`tuner` (tuning.Tuner): schedule parameters remembered in a tuning database, or searched now.
    `id_limits` (input_checks.id_checks()["ids"]): the ids inputs to range-check inside the function.
    `specialize`: more functions beside "main", each with some shape symbols fixed, e.g.
    {"main_b1": {"batch": 1}} (see batch_one_bucket). `dense_tile`: the dense kernels' register tile
    (rows, vector) for the target (kernels/dense.py register_tile)."""
    return _Lowering(graph, tuner, id_limits, dense_tile).run(specialize)


def batch_one_bucket(graph: Graph) -> dict[str, dict[str, int]]:
    """{"main_b1": {symbol: 1}} when the inputs' shapes have exactly one symbol (the batch), else {}."""
    symbols = {name for v in graph.inputs for d in v.type.shape if not isinstance(d, int) for name in d.names}
    return {"main_b1": {symbols.pop(): 1}} if len(symbols) == 1 else {}
