"""Type rules of the fused recommendation ops that passes create (reference semantics: interpreter.py).

    batched_embedding_bag(weights [total], ids [B, C] [, per_sample_weights [B, C]]) -> [B, sum(dims)]
        T tables side by side in one flat weights buffer (table t: `table_rows[t] x table_dims[t]`
        floats, in order); table t pools ids columns [id_cols[t], id_cols[t] + bag_sizes[t]) (ids local
        to the table) and writes output columns [sum(dims[:t]), sum(dims[:t + 1])): the concatenation
        of the T lookups. `mode` (sum | mean) is shared.
    dot_interaction(x [B, D], features [B, T*D]) -> [B, D + n(n-1)/2]  (n = T + 1)
        DLRM's interaction: Z = [x; f_1; ...; f_T] ([B, n, D]), the strict lower triangle of Z Z^T in
        row-major order (torch.tril_indices(n, n, -1)), concatenated after x.
"""

from __future__ import annotations

from typing import Any

from recc.compiler.ir.ops import _fail, _register
from recc.compiler.ir.types import TensorType, is_int


def batched_table_layout(attrs: dict[str, Any]) -> list[tuple[int, int, int, int, int, int]]:
    """Per table: (rows, dim, bag_size, id_col, weight_offset, out_col), from the op's attributes."""
    layout, weight_offset, out_col = [], 0, 0
    for rows, dim, bag, col in zip(attrs["table_rows"], attrs["table_dims"], attrs["bag_sizes"], attrs["id_cols"]):
        layout.append((rows, dim, bag, col, weight_offset, out_col))
        weight_offset += rows * dim
        out_col += dim
    return layout


@_register("batched_embedding_bag", (2, 3),
           "many embedding bags (tables of any rows and dims in one flat buffer) in one op; output = their concat")
def _batched_embedding_bag(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    op = "batched_embedding_bag"
    weights, ids = ts[0], ts[1]
    keys = ("table_rows", "table_dims", "bag_sizes", "id_cols")
    if len({len(attrs[k]) for k in keys}) != 1 or not attrs["table_rows"]:
        raise _fail(op, f"{', '.join(keys)} must be non-empty and of equal length")
    if attrs["mode"] not in ("sum", "mean"):
        raise _fail(op, f"unsupported mode {attrs['mode']}")
    if attrs.get("table_precision", "fp32") not in ("fp32", "int8", "bf16"):
        raise _fail(op, f"unsupported table_precision {attrs.get('table_precision')!r}")
    if len(ts) != 2 + bool(attrs.get("has_weights")):
        raise _fail(op, f"has_weights={attrs.get('has_weights')} but {len(ts)} inputs")
    layout = batched_table_layout(attrs)
    total = sum(rows * dim for rows, dim, *_ in layout)
    if weights.shape != (total,) or weights.dtype != "float32":
        raise _fail(op, f"weights must be float32[{total}] (the tables' elements), got {weights}")
    if ids.rank != 2 or ids.dtype != "int64" or not isinstance(ids.shape[1], int):
        raise _fail(op, f"ids must be int64 [B, C], got {ids}")
    for t, (_, _, bag, col, _, _) in enumerate(layout):
        if col < 0 or col + bag > ids.shape[1]:
            raise _fail(op, f"table {t} reads ids columns {col}..{col + bag} of {ids}")
    if attrs.get("has_weights") and ts[2] != TensorType(ids.shape, "float32"):
        raise _fail(op, f"per_sample_weights must be float32 like ids {ids}, got {ts[2]}")
    return [TensorType((ids.shape[0], sum(attrs["table_dims"])), "float32")]


@_register("dot_interaction", (2, 2), "DLRM pairwise dot interaction: [x, strict lower triangle of Z Z^T]")
def _dot_interaction(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x, features = ts
    if x.rank != 2 or features.rank != 2 or x.shape[0] != features.shape[0] or is_int(x.dtype):
        raise _fail("dot_interaction", f"expects x [B, D] and features [B, T*D], got {x} and {features}")
    dim, width = x.shape[1], features.shape[1]
    if not isinstance(dim, int) or not isinstance(width, int) or width % dim or features.dtype != x.dtype:
        raise _fail("dot_interaction", f"features {features} is not a whole number of {x}-wide vectors")
    n = width // dim + 1
    return [TensorType((x.shape[0], dim + n * (n - 1) // 2), x.dtype)]


@_register("target_attention", (6, 16),
           "DIN's attention unit: MLP scores of [k, q, k-q, k*q] per position, masked softmax, weighted sum of k")
def _target_attention(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """target_attention(keys [B, S, D], query [B, D], [score_bias [B, S]], w_1 [N1, 3D], b_1 [N1], ...,
    w_L [1, N], b_L [1]) -> [B, D]. Layer 1 reads [k, q, k*q] (the k-q block folded into the other two:
    W [k, q, k-q, k*q] = (W_k + W_d) k + (W_q - W_d) q + W_kq (k*q)); `activations` name the hidden layers'
    activations; the last layer (one output) has none. score_bias is added to the scores (DIN's mask)."""
    op = "target_attention"
    keys, query = ts[0], ts[1]
    has_bias = bool(attrs.get("has_score_bias"))
    layers = ts[2 + has_bias:]
    if keys.rank != 3 or query.shape != (keys.shape[0], keys.shape[2]) or keys.dtype != "float32":
        raise _fail(op, f"expects keys [B, S, D] and query [B, D] float32, got {keys} and {query}")
    if has_bias and ts[2] != TensorType(keys.shape[:2], "float32"):
        raise _fail(op, f"score_bias must be float32 {keys.shape[:2]}, got {ts[2]}")
    if len(layers) % 2 or len(layers) // 2 != len(attrs["activations"]) + 1:
        raise _fail(op, f"{len(layers)} layer inputs for {len(attrs['activations'])} hidden activations")
    width = 3 * keys.shape[2]
    for i in range(0, len(layers), 2):
        w, b = layers[i], layers[i + 1]
        if w.rank != 2 or w.shape[1] != width or b.shape != (w.shape[0],):
            raise _fail(op, f"layer {i // 2}: weight {w} and bias {b} do not take {width} inputs")
        width = w.shape[0]
    if width != 1:
        raise _fail(op, f"the last layer must produce one score, got {width}")
    return [TensorType((keys.shape[0], keys.shape[2]), "float32")]


@_register("attention", (3, 4), "scaled dot-product attention: softmax(q k^T * scale [+ bias]) v over the last two axes")
def _attention(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """attention(q [..., Lq, d], k [..., Lk, d], v [..., Lk, dv] [, bias broadcastable to [..., Lq, Lk]])
    -> [..., Lq, dv]; q, k and v share their leading dims (batch, heads); `scale` multiplies q k^T."""
    q, k, v = ts[:3]
    if q.rank < 3 or k.rank != q.rank or v.rank != q.rank or len({q.dtype, k.dtype, v.dtype}) != 1:
        raise _fail("attention", f"expects q, k, v of one rank >= 3 and dtype, got {q}, {k}, {v}")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2] or q.shape[-1] != k.shape[-1] \
            or k.shape[-2] != v.shape[-2]:
        raise _fail("attention", f"q {q}, k {k}, v {v} do not line up")
    if len(ts) == 4:
        from recc.compiler.ir.ops import broadcast_shapes

        scores = q.shape[:-1] + (k.shape[-2],)
        if broadcast_shapes("attention", scores, ts[3].shape) != scores or ts[3].dtype != q.dtype:
            raise _fail("attention", f"bias {ts[3]} does not broadcast to the scores {scores}")
    return [TensorType(q.shape[:-1] + (v.shape[-1],), q.dtype)]


def _recurrent(op: str, ts: list[TensorType], has_scores: bool) -> list[TensorType]:
    x = ts[0]
    w_hh, b_hh = ts[1 + has_scores], ts[2 + has_scores]
    if x.rank != 3 or x.dtype != "float32" or w_hh.rank != 2 or w_hh.dtype != "float32":
        raise _fail(op, f"expects x [B, L, 3H] and w_hh [3H, H] float32, got {x} and {w_hh}")
    hidden = w_hh.shape[1]
    if not isinstance(hidden, int) or w_hh.shape[0] != 3 * hidden or x.shape[2] != 3 * hidden:
        raise _fail(op, f"gate widths differ: x {x}, w_hh {w_hh} (both need 3H gate columns r, z, n)")
    if b_hh != TensorType((3 * hidden,), "float32"):
        raise _fail(op, f"b_hh must be float32 [{3 * hidden}], got {b_hh}")
    if has_scores and ts[1] != TensorType(x.shape[:2], "float32"):
        raise _fail(op, f"scores must be float32 {x.shape[:2]}, got {ts[1]}")
    return [TensorType((x.shape[0], x.shape[1], hidden), "float32")]


@_register("gru", (3, 3), "GRU over a sequence from projected inputs: every step's state, zero initial state")
def _gru(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """gru(x [B, L, 3H], w_hh [3H, H], b_hh [3H]) -> h [B, L, H]. x holds the input projections of all steps
    (W_ih x_t + b_ih, gates r, z, n in PyTorch's order, computed before as one GEMM); per step
    r, z = sigmoid(x_rz + W_hr,hz h + b), n = tanh(x_n + r * (W_hn h + b_hn)), h' = n + z * (h - n)."""
    return _recurrent("gru", ts, has_scores=False)


@_register("augru", (4, 4), "DIEN's AUGRU: a GRU whose update gate is scaled by an attention score per step")
def _augru(ts: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """augru(x [B, L, 3H], scores [B, L], w_hh [3H, H], b_hh [3H]) -> h [B, L, H]: as gru, with
    u = z * score_t and h' = h + u * (n - h) (a zero score carries the state through the step)."""
    return _recurrent("augru", ts, has_scores=True)
