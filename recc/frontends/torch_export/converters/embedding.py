"""Embedding lookups: aten.embedding and aten._embedding_bag (sum/mean/max, offsets or 2-D ids)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recc.compiler.ir import Value
from recc.frontends.torch_export.converters.context import (
    ConversionError,
    Ctx,
    Lazy,
    converts,
)


@converts("arange.start_step", "arange.default", "arange.start")
def _arange(ctx: Ctx, node: torch.fx.Node, *args: Any, **kw: Any) -> Any:
    values = [ctx.arg(a) for a in args]
    start, end, step = (0, values[0], 1) if len(values) == 1 else (values + [1])[:3]
    if all(isinstance(v, int) for v in (start, end, step)):
        return ctx.const(np.arange(start, end, step), ctx.out_dtype(node))
    return Lazy("arange with a symbolic end", (start, end, step, "the offsets of a 2-D embedding_bag"))


@converts("embedding.default")
def _embedding(ctx: Ctx, node: torch.fx.Node, weight: Any, ids: Any, padding_idx: int = -1, *rest: Any) -> Value:
    return ctx.emit("embedding", [ctx.value(weight), ctx.value(ids)])


@converts("embedding_bag.padding_idx", "embedding_bag.default", "_embedding_bag.default")
def _embedding_bag(ctx: Ctx, node: torch.fx.Node, weight: Any, ids: Any, offsets: Any,
                   scale_grad_by_freq: bool = False, mode: int = 0, sparse: bool = False,
                   per_sample_weights: Any = None, include_last_offset: bool = False,
                   padding_idx: Any = None) -> tuple[Any, ...]:
    """aten's embedding_bag -> IR embedding_bag; recognises torch's rewrite of the 2-D input form
    (ids.reshape(-1) with offsets = arange(0, B*L, L)) and restores the fixed [B, L] layout."""
    if mode not in (0, 1):
        raise ConversionError("embedding_bag mode='max' is not supported")
    if padding_idx not in (None, -1):
        raise ConversionError("embedding_bag with padding_idx is not supported")
    table, mode_name = ctx.value(weight), ("sum", "mean")[mode]
    offsets_v = ctx.env[offsets]
    weights = [ctx.value(per_sample_weights)] if per_sample_weights is not None else []
    if isinstance(offsets_v, Lazy):
        start, _, step = offsets_v.args[:3]
        ids_node = ids
        flat = ctx.value(ids_node)
        producer = flat.producer
        if start != 0 or producer is None or producer.op != "reshape" or producer.inputs[0].type.rank != 2 \
                or producer.inputs[0].type.shape[1] != step or include_last_offset:
            raise ConversionError("offsets built by arange that do not describe fixed-size bags")
        ids2d = producer.inputs[0]
        if weights:
            w = weights[0]
            weights = [ctx.emit("reshape", [w], shape=ids2d.type.shape)]
        out = ctx.emit("embedding_bag", [table, ids2d] + weights, mode=mode_name, layout="fixed",
                       has_weights=bool(weights))
    else:
        out = ctx.emit("embedding_bag", [table, ctx.value(ids), ctx.value(offsets)] + weights, mode=mode_name,
                       layout="offsets", include_last_offset=bool(include_last_offset), has_weights=bool(weights))
    unused = Lazy("an embedding_bag auxiliary output", ("nothing (it is for training only)",))
    return (out, unused, unused, unused)
