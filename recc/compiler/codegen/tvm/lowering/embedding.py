"""embedding_bag, batched_embedding_bag and embedding: recc's gather kernels (kernels/cpu/embedding.py,
embedding_offsets.py); the batched lookup's prefetch distance from the tuner (measured here when tuning)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from tvm import relax

from recc.compiler.codegen.tvm.kernels.cpu.embedding import (
    Segment,
    batched_embedding_bag,
    embedding_bag_fixed,
)
from recc.compiler.codegen.tvm.kernels.cpu.embedding_offsets import (
    bag_starts,
    embedding_bag_offsets,
    embedding_lookup,
)
from recc.compiler.codegen.tvm.kernels.cpu.gather import DEFAULT_SCHEDULE, GatherSchedule
from recc.compiler.codegen.tvm.lowering.checks import guarded_args
from recc.compiler.codegen.tvm.lowering.context import LoweringContext
from recc.compiler.codegen.tvm.tuning import PREFETCH_DISTANCES, time_kernel
from recc.compiler.ir import Node
from recc.compiler.ir.fused_ops import batched_table_layout
from recc.compiler.ir.spill import chunked, release_pages
from recc.compiler.quantize import pack_rowwise_int8, rowwise_row_bytes, to_bf16

TUNE_GATHER_MAX_ELEMENTS = 64 << 20  # larger flat tables are not copied for a tuning run


def lower_embedding_bag(lw: LoweringContext, node: Node) -> relax.Expr:
    table = node.inputs[0]
    rows, dim = table.type.shape
    attrs = node.attrs
    has_weights = bool(attrs.get("has_weights"))
    if attrs["layout"] == "fixed" and not isinstance(node.inputs[1].type.shape[1], int):
        return _symbolic_bag(lw, node)
    if attrs["layout"] == "fixed":
        bag = node.inputs[1].type.shape[1]
        key = ("embedding_bag_fixed", rows, dim, bag, attrs["mode"], has_weights)
        fn = lw.kernel(key, lambda: embedding_bag_fixed(rows, dim, bag, attrs["mode"], has_weights))
    else:
        last = bool(attrs.get("include_last_offset"))
        key = ("embedding_bag_offsets", rows, dim, attrs["mode"], has_weights, last)
        fn = lw.kernel(key, lambda: embedding_bag_offsets(rows, dim, attrs["mode"], has_weights, last))
    return lw.emit(relax.call_tir(fn, guarded_args(lw, node), lw.struct(node.output)))


def _symbolic_bag(lw: LoweringContext, node: Node) -> relax.Expr:
    """Fixed bags of a symbolic size L (ids [B, L]: an ONNX input whose bag dim is named like its batch)
    through the offsets kernel: ids flattened to [B * L], bag b starting at b * L."""
    table, ids = node.inputs[0], node.inputs[1]
    rows, dim = table.type.shape
    attrs, has_weights = node.attrs, bool(node.attrs.get("has_weights"))
    args = guarded_args(lw, node)
    b, length = lw.dim(ids.type.shape[0]), lw.dim(ids.type.shape[1])
    starts = lw.emit(relax.call_tir(lw.kernel(("bag_starts",), bag_starts), [args[1]],
                                    relax.TensorType([b], "int64")))
    flat = [lw.emit(relax.op.reshape(a, [b * length])) for a in args[1:]]
    fn = lw.kernel(("embedding_bag_offsets", rows, dim, attrs["mode"], has_weights, False),
                   lambda: embedding_bag_offsets(rows, dim, attrs["mode"], has_weights, False))
    return lw.emit(relax.call_tir(fn, [args[0], flat[0], starts, *flat[1:]], lw.struct(node.output)))


def segments(attrs: dict[str, Any]) -> tuple[Segment, ...]:
    """The batched lookup's tables as kernel segments: maximal runs of consecutive tables with the same
    dim and bag size (DLRM: one; Wide&Deep: deep tables, then wide tables)."""
    runs: list[list[tuple[int, ...]]] = []
    for table in batched_table_layout(attrs):
        if runs and runs[-1][0][1:3] == table[1:3]:
            runs[-1].append(table)
        else:
            runs.append([table])
    return tuple(Segment(tuple(t[0] for t in run), run[0][1], run[0][2], tuple(t[3] for t in run),
                         out_col=run[0][5], weight_offset=run[0][4]) for run in runs)


def lower_batched_embedding_bag(lw: LoweringContext, node: Node) -> relax.Expr:
    attrs = node.attrs
    segs = segments(attrs)
    ids_width = node.inputs[1].type.shape[1]
    has_weights = bool(attrs.get("has_weights"))
    precision = attrs.get("table_precision", "fp32")
    if precision in ("int8", "bf16"):
        schedule = DEFAULT_SCHEDULE
        segs = rowwise_segments(attrs) if precision == "int8" else tuple(replace(s, bf16=True) for s in segs)
        pack = (lambda: pack_tables(lw, node)) if precision == "int8" else (lambda: bf16_tables(lw, node))
        # the packed rows stand in for the fp32 tables, which then never become a runtime weight
        table, saved = id(node.inputs[0]), lw.exprs.pop(id(node.inputs[0]), None)
        lw.exprs[table] = lw.weight(f"{node.inputs[0].name}__{precision}rows", pack)
        args = guarded_args(lw, node)
        lw.exprs.pop(table)
        if saved is not None:
            lw.exprs[table] = saved
    else:
        schedule = tuned_gather(lw, node, segs, ids_width)
        args = guarded_args(lw, node)
    key = ("batched_embedding_bag", segs, ids_width, attrs["mode"], has_weights, schedule)
    fn = lw.kernel(key, lambda: batched_embedding_bag(segs, ids_width, attrs["mode"], has_weights, schedule))
    return lw.emit(relax.call_tir(fn, args, lw.struct(node.output)))


def rowwise_segments(attrs: dict[str, Any]) -> tuple[Segment, ...]:
    """segments() for 8-bit row-wise tables: each table's rows rowwise_row_bytes(dim) bytes, placed one
    table after another in a flat byte buffer."""
    out, offset = [], 0
    for seg in segments(attrs):
        out.append(replace(seg, weight_offset=offset, row_bytes=rowwise_row_bytes(seg.dim)))
        offset += sum(seg.table_rows) * rowwise_row_bytes(seg.dim)
    return tuple(out)


def bf16_tables(lw: LoweringContext, node: Node) -> np.ndarray:
    """The flat fp32 tables rounded to bf16 (uint16), chunk by chunk (a spilled buffer is never all mapped)."""
    flat = lw.graph.param_array(node.inputs[0])
    out = np.empty(flat.shape, np.uint16)
    for start, chunk in chunked(flat):
        out[start:start + len(chunk)] = to_bf16(chunk)
    return out


PACK_ROWS = 1 << 16  # rows quantized at a time: the temporaries stay MBs for GB tables


def pack_tables(lw: LoweringContext, node: Node) -> np.ndarray:
    """The flat fp32 tables as 8-bit row-wise bytes, in rowwise_segments' order, written chunk by chunk
    into one buffer (no per-table copies concatenated: at scale 1 those were a second copy of the output)."""
    flat = lw.graph.param_array(node.inputs[0])  # float32 (quantize-dense's condition); a memmap when spilled
    layout = batched_table_layout(node.attrs)
    out = np.empty(sum(rows * rowwise_row_bytes(dim) for rows, dim, *_ in layout), np.uint8)
    at = 0
    for rows, dim, _, _, offset, _ in layout:
        table = flat[offset:offset + rows * dim].reshape(rows, dim)
        for start in range(0, rows, PACK_ROWS):
            packed = pack_rowwise_int8(table[start:start + PACK_ROWS])
            out[at:at + packed.size] = packed
            at += packed.size
            release_pages(flat, offset + start * dim, min(PACK_ROWS, rows - start) * dim)  # a spilled buffer
    return out


def tuned_gather(lw: LoweringContext, node: Node, segs: tuple[Segment, ...],
                 ids_width: int) -> GatherSchedule:
    """The batched gather's schedule from the tuner (DEFAULT_SCHEDULE without one, or for tables too big
    to copy for a run); a candidate is timed at batch 256 on uniform random ids."""
    attrs, weights = node.attrs, node.inputs[0]
    if lw.tuner is None:
        return DEFAULT_SCHEDULE
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
        func = batched_embedding_bag(segs, ids_width, attrs["mode"], bool(attrs.get("has_weights")), schedule)
        return time_kernel(func, lw.tuner.target, arguments)

    if total > TUNE_GATHER_MAX_ELEMENTS:
        return DEFAULT_SCHEDULE
    shape = f"{len(attrs['table_rows'])}t:{sum(attrs['table_rows'])}r:{ids_width}i:{attrs['mode']}"
    params = lw.tuner.params("batched_embedding_bag", shape,
                             {"grid": [{"prefetch_distance": d} for d in PREFETCH_DISTANCES]}, measure)
    return GatherSchedule(**params) if params else DEFAULT_SCHEDULE


def lower_embedding(lw: LoweringContext, node: Node) -> relax.Expr:
    """Plain lookups (DIN's behaviour sequence) through recc's prefetching gather kernel on flat ids."""
    table, ids = node.inputs
    rows, dim = table.type.shape
    table_e, ids_e = guarded_args(lw, node)
    if table.type.dtype != "float32" or ids.type.dtype != "int64":
        return lw.emit(relax.op.take(table_e, ids_e, axis=0, mode="clip"))  # ids were range-checked
    fn = lw.kernel(("embedding_lookup", rows, dim), lambda: embedding_lookup(rows, dim))
    count = lw.product(ids.type.shape)
    flat = lw.emit(relax.op.reshape(ids_e, [count])) if ids.type.rank != 1 else ids_e
    out = lw.emit(relax.call_tir(fn, [table_e, flat], relax.TensorType([count, lw.dim(dim)], "float32")))
    return lw.emit(relax.op.reshape(out, [lw.dim(d) for d in node.output.type.shape]))


LOWERINGS = {
    "embedding_bag": lower_embedding_bag,
    "embedding": lower_embedding,
    "batched_embedding_bag": lower_batched_embedding_bag,
}
