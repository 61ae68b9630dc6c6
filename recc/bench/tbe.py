"""FBGEMM's table-batched embeddings (TBE) as `recc bench` systems, the way TorchRec runs inference lookups:

- fbgemm-tbe:      a copy of the model whose nn.EmbeddingBag lookups are ONE
                   `IntNBitTableBatchedEmbeddingBagsCodegen` (fp32 weights, SparseType.FP32), fed like a
                   KeyedJaggedTensor: the features' ids concatenated (feature-major) plus bag offsets; the
                   pooled [B, sum(D)] output is split back into the per-table embeddings the model uses.
- fbgemm-tbe-int8: the same with 8-bit row-wise tables (SparseType.INT8, fp16 scale and bias per row, the
                   TBE inference layout), quantized by FBGEMM's own `tbe.utils.quantize.quantize_embs`.

Why IntNBit for fp32 too: `SplitTableBatchedEmbeddingBagsCodegen` (EmbeddingLocation.HOST,
ComputeDevice.CPU) has no CPU kernel under `torch.inference_mode` (its lookup is the training op
`split_embedding_codegen_lookup_sgd_function_pt2` has an autograd kernel, no CPU one), and under `no_grad` it
measured 1.2-2.2x slower than IntNBit FP32 (8 tables of 40k x 32, 80 ids a bag, batch 1-256, 1 thread).

The rewrite is generic: the model is traced with torch.fx, and its nn.EmbeddingBag calls (2-D ids, no
offsets or per-sample weights, sum or mean pooling, no padding_idx) become one TBE op placed before the first
use of any lookup's output (ids indexed from the inputs are hoisted there; a call whose ids are computed
later would start a second op); the same module called twice is one table, two features. Tables whose dim
is not a multiple of 4 (WnD's 1-wide wide tables) stay fp32 in the int8 system (FBGEMM's own
split_embedding_inference_converter falls back too, to fp16). It applies to DLRM RMC1/2/3, NCF, WnD, MT-WnD
and DIN (one op each); DIEN does not trace (its GRU loops over a Proxy) and a model without EmbeddingBags
has nothing to batch: `setup` raises TbeRewriteError for both (the harness records the system as failed).
The copy shares the dense layers with the model (read-only at inference) and drops the float tables.

Bounds checks are off (BoundsCheckMode.NONE, the fastest; TorchRec's default WARNING mode measured 1.04-1.8x
slower on the tables above); indices stay int64 as the model gives them (no conversion pass).
"""

from __future__ import annotations

import operator
import warnings
from typing import Any

import torch
from torch import fx, nn

from recc.bench.systems import Eager

TBE_SYSTEMS = ("fbgemm-tbe", "fbgemm-tbe-int8")
POOLING = ("sum", "mean")
EXTRA_HINT = "fbgemm-tbe needs fbgemm_gpu: pip install 'recc[bench-tbe]' (fbgemm-gpu-cpu==1.8.0)"


class TbeRewriteError(ValueError):
    """The model has no nn.EmbeddingBag lookups the fbgemm-tbe systems can batch."""


def import_fbgemm() -> Any:
    try:
        import fbgemm_gpu  # noqa: F401 - registers torch.ops.fbgemm
        from fbgemm_gpu import split_table_batched_embeddings_ops_inference as inference
    except ImportError as error:
        raise ImportError(f"{EXTRA_HINT} ({error})") from error
    return inference


class TableBatchedLookup(nn.Module):
    """One TBE op over F features: forward(ids_1 [B, L_1], ..., ids_F [B, L_F]) -> F pooled [B, D_f]."""

    def __init__(self, tbe: nn.Module, dims: list[int]) -> None:
        super().__init__()
        self.tbe = tbe
        self.dims = dims
        self.weights_types: list[str] = []
        self._offsets: dict[tuple[Any, ...], torch.Tensor] = {}

    def offsets(self, batch: int, bag_sizes: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """KJT offsets of fixed-size bags: feature f's B bags of L_f ids each, features one after another.
        They depend on the shapes only, so they are built once per batch size (a KJT arrives with them)."""
        key = (batch, bag_sizes, dtype)
        if key not in self._offsets:
            lengths = torch.tensor(bag_sizes, dtype=dtype).repeat_interleave(batch)
            self._offsets[key] = torch.cat([torch.zeros(1, dtype=dtype), lengths.cumsum(0)])
        return self._offsets[key]

    def forward(self, *ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        indices = torch.cat([x.reshape(-1) for x in ids])
        offsets = self.offsets(ids[0].shape[0], tuple(x.shape[1] for x in ids), indices.dtype)
        return self.tbe(indices, offsets).split(self.dims, dim=1)


def batchable(module: nn.Module, node: fx.Node) -> bool:
    return (isinstance(module, nn.EmbeddingBag) and module.mode in POOLING and module.padding_idx is None
            and len(node.args) == 1 and not node.kwargs and not module.max_norm)


def hoistable(ids: fx.Node) -> bool:
    """ids computed by indexing the inputs only (sparse_ids[:, t]): free to move up to where the op goes."""
    return ids.op == "call_function" and ids.target is operator.getitem and all(
        arg.op == "placeholder" for arg in ids.all_input_nodes)


def lookup_groups(traced: fx.GraphModule) -> list[list[fx.Node]]:
    """Batchable EmbeddingBag calls grouped by pooling mode, in graph order, such that every call's ids
    exist (or can be hoisted: `hoistable`) before the group's first use of a lookup's output: one TBE op
    placed there serves the whole group. A call whose ids come later starts a new group (a second op)."""
    order = {node: index for index, node in enumerate(traced.graph.nodes)}
    groups: list[tuple[str, list[fx.Node]]] = []
    for node in traced.graph.nodes:
        if node.op != "call_module" or not batchable(traced.get_submodule(node.target), node):
            continue
        mode, ids = traced.get_submodule(node.target).mode, node.args[0]
        for group_mode, calls in groups:
            if group_mode == mode and (hoistable(ids) or order[ids] < order[first_use(calls, order)]):
                calls.append(node)
                break
        else:
            groups.append((mode, [node]))
    return [calls for _, calls in groups]


def first_use(calls: list[fx.Node], order: dict[fx.Node, int]) -> fx.Node:
    """The earliest node using any of the calls' outputs."""
    return min((user for call in calls for user in call.users), key=order.__getitem__)


def trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as error:  # noqa: BLE001 - any tracing failure means: not rewritable
        name = getattr(model, "name", type(model).__name__)
        raise TbeRewriteError(f"fbgemm-tbe cannot rewrite {name}: torch.fx cannot trace it "
                              f"({type(error).__name__}: {str(error).splitlines()[0][:120]})") from error


def with_table_batched_lookups(model: nn.Module, int8: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of `model` whose EmbeddingBag lookups group as FBGEMM TBE ops; and facts about the rewrite."""
    inference = import_fbgemm()
    traced = trace(model)
    groups = lookup_groups(traced)
    if not groups:
        name = getattr(model, "name", type(model).__name__)
        raise TbeRewriteError(f"fbgemm-tbe cannot rewrite {name}: it has no nn.EmbeddingBag lookups to batch "
                              f"(sum/mean bags called on 2-D ids without offsets)")
    facts: dict[str, Any] = {"ops": 0, "tables": 0, "features": 0, "table_bytes": 0, "weights_tys": {}}
    for index, group in enumerate(groups):
        name = f"tbe_{index}"
        lookup = build_lookup(traced, group, inference, int8)
        traced.add_submodule(name, lookup)  # the trace's own top level: the model is not touched
        replace_group(traced.graph, group, name)
        facts["ops"] += 1
        facts["tables"] += len({n.target for n in group})
        facts["features"] += len(group)
        facts["table_bytes"] += lookup.tbe.weights_host.numel()
        for weights_ty in lookup.weights_types:
            facts["weights_tys"][weights_ty] = facts["weights_tys"].get(weights_ty, 0) + 1
    traced.graph.eliminate_dead_code()
    rewritten = fx.GraphModule(graph_root(traced), traced.graph, class_name=f"{type(model).__name__}Tbe")
    facts["embedding_bags_left"] = sum(isinstance(m, nn.EmbeddingBag) for m in rewritten.modules())
    return rewritten, facts


def build_lookup(traced: fx.GraphModule, group: list[fx.Node], inference: Any,
                 int8: bool) -> TableBatchedLookup:
    from fbgemm_gpu.split_embedding_configs import SparseType
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import (BoundsCheckMode, EmbeddingLocation,
                                                                      PoolingMode)
    from fbgemm_gpu.tbe.utils.quantize import quantize_embs

    targets = list(dict.fromkeys(node.target for node in group))  # a module called twice: one table
    bags = [traced.get_submodule(target) for target in targets]
    int8_ok = [int8 and bag.embedding_dim % SparseType.INT8.align_size() == 0 for bag in bags]
    types = [SparseType.INT8 if ok else SparseType.FP32 for ok in int8_ok]
    specs = [(target, bag.num_embeddings, bag.embedding_dim, weights_ty, EmbeddingLocation.HOST)
             for target, bag, weights_ty in zip(targets, bags, types, strict=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_embs' torch.tensor(tensor) copy-construct notice
        weights = [quantize_embs(bag.weight.detach(), ty) for bag, ty in zip(bags, types, strict=True)]
    tbe = inference.IntNBitTableBatchedEmbeddingBagsCodegen(
        specs, feature_table_map=[targets.index(node.target) for node in group],
        pooling_mode=PoolingMode.SUM if bags[0].mode == "sum" else PoolingMode.MEAN, device="cpu",
        bounds_check_mode=BoundsCheckMode.NONE, weight_lists=weights, output_dtype=SparseType.FP32)
    lookup = TableBatchedLookup(tbe, [traced.get_submodule(node.target).embedding_dim for node in group])
    lookup.weights_types = [weights_ty.name for weights_ty in types]
    return lookup


def replace_group(graph: fx.Graph, group: list[fx.Node], name: str) -> None:
    """One call of module `name` on the group's ids, placed before the first use of a lookup's output (ids
    computed later are hoisted there); each lookup becomes a getitem of its result."""
    order = {node: index for index, node in enumerate(graph.nodes)}
    anchor = first_use(group, order)
    for ids in dict.fromkeys(node.args[0] for node in group):
        if order[ids] > order[anchor]:
            anchor.prepend(ids)
    with graph.inserting_before(anchor):
        batched = graph.call_module(name, tuple(node.args[0] for node in group))
        for feature, node in enumerate(group):
            node.replace_all_uses_with(graph.call_function(operator.getitem, (batched, feature)))
            graph.erase_node(node)


def graph_root(traced: fx.GraphModule) -> dict[str, Any]:
    """The modules and attributes the rewritten graph names, taken from the trace (shared, not copied): the
    new GraphModule builds its own containers, so the model is left untouched and the float tables dropped."""
    root: dict[str, Any] = {}
    for node in traced.graph.nodes:
        if node.op in ("call_module", "get_attr") and node.target not in root:
            parent, _, leaf = node.target.rpartition(".")
            owner = traced.get_submodule(parent) if parent else traced
            root[node.target] = getattr(owner, leaf)
    return root


class FbgemmTbe(Eager):
    def __init__(self, int8: bool = False) -> None:
        self.int8 = int8
        self.name = "fbgemm-tbe-int8" if int8 else "fbgemm-tbe"

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]:
        # imports fbgemm_gpu first, or raises an ImportError naming the extra
        self.model, facts = with_table_batched_lookups(model, int8=self.int8)
        import fbgemm_gpu

        return {"fbgemm_gpu": fbgemm_gpu.__version__, "op": "IntNBitTableBatchedEmbeddingBagsCodegen",
                "weights_ty": "INT8 (row-wise, fp16 scale+bias)" if self.int8 else "FP32",
                "bounds_check_mode": "NONE", "indices": "int64, KJT layout (feature-major) + offsets",
                **facts, "torch_threads": torch.get_num_threads()}
