"""dense(x, w, b) -> dense(x, w, b, precision="int8" | "bf16") where the compile asks for it

Why: an int8 layer streams a quarter of the weight bytes and multiplies on the CPU's int8 dot-product
units (AMX `tdpbusd`: 2.7 TOP/s on one core here, against ~0.16 TFLOP/s of fp32 FMA). The semantics of an
int8 layer (per-channel weights, per-row dynamic activations, int32 accumulation, fp32 epilogue) are
recc/compiler/quantize.py's; the interpreter runs them, so `--verify` checks the kernels against them.
Legal (and chosen) when the weight and bias are fp32 parameters, the layer is not named in `keep_fp32`,
and the target has a kernel for the precision (options `int8_kernel`: "amx", "vnni", "avx2" or None;
`bf16_kernel`: "amx" (AMX-BF16 `tdpbf16ps`), "storage" (bf16 weights widened in the fp32 kernel) or None;
bf16 = bf16 operands, fp32 accumulation). Declined layers
stay fp32, each with its reason in the pass report. Under int8 the batched lookup's tables also become
8-bit row-wise (an fp16 scale and bias per row, FBGEMM TBE's layout; `keep_fp32=["tables"]` keeps them fp32): a
quarter of the bytes every lookup streams. Reduced precision changes the numbers: the compile
measures how much (recc/compiler/accuracy.py) and can refuse an artifact beyond a bound.
"""

from __future__ import annotations

import numpy as np

from recc.compiler.ir import Graph, Node, Value
from recc.compiler.pass_manager import PassContext, PassStats
from recc.compiler.ir.fused_ops import batched_table_layout
from recc.compiler.ir.spill import chunked
from recc.compiler.quantize import FP16_MAX, table_lines
from recc.compiler.rewrite import Builder, Match, Reject, RewritePass, Rule


def layer_names(node: Node) -> set[str]:
    """The names `keep_fp32` may give a dense layer: its weight parameter's name ("top_4_weight"), that
    name without "_weight" ("top_4"), and the module path ("top.4")."""
    weight = node.inputs[1].name
    stem = weight[:-len("_weight")] if weight.endswith("_weight") else weight
    return {weight, stem, stem.replace("_", ".")}


def _match(graph: Graph, dense: Node, ctx: PassContext) -> Match | Reject | None:
    precision = ctx.option("precision", "fp32")
    if precision == "fp32" or dense.attrs.get("precision", "fp32") != "fp32":
        return None
    weights = [v for v in dense.inputs[1:]]
    if any(v.kind != "param" or v.type.dtype != "float32" for v in weights):
        return Reject("weight or bias is not an fp32 parameter")
    if layer_names(dense) & set(ctx.option("keep_fp32", ())):
        return Reject("kept fp32 (--keep-fp32)")
    if ctx.option("auto") and not int8_pays(*reversed(dense.inputs[1].type.shape)):
        return Reject("kept fp32 by auto: int8 does not pay for a layer this narrow (padding to 64 x 32)")
    if precision == "int8" and ctx.option("int8_kernel") is None:
        return Reject("kept fp32: the target has no int8 kernel (AMX-INT8, AVX512-VNNI or AVX2)")
    if precision == "bf16" and ctx.option("bf16_kernel") is None:
        return Reject("kept fp32: no bf16 kernel for this target")
    return Match([dense], {"precision": precision})


TABLES = "tables"  # the keep_fp32 name of the embedding tables


def int8_pays(k: int, n: int) -> bool:
    """Whether an int8 layer [n, k] beats fp32 at every batch, by its size and the padding it wastes (the
    kernels pad K to 64 and N to 32; each call quantizes its input rows). Measured (AMX, 1 thread; fp32 /
    int8 us at batch 1, 64, 256): 512x256 4.2/2.9, 90/13, 353/52; 256x64 0.6/0.8, 12/6.5, 46/23; 13x512
    0.3/1.6, 5.6/8.3, 21/32; 64x1 0.2/0.5, 0.9/2.4, 3.2/7.8. RMC1 (layers of 8-17 K weights) ran 8.2 us fp32
    and 12.2 us with three of them int8 at batch 1: below 32 K weights a layer stays fp32."""
    return k / (-(-k // 64) * 64) * (n / (-(-n // 32) * 32)) >= 0.5 and k * n >= 32768


def _match_tables(graph: Graph, node: Node, ctx: PassContext) -> Match | Reject | None:
    """A batched lookup's tables to 8-bit row-wise (FBGEMM TBE's layout) under precision int8, to bf16 under
    bf16 (NaN and inf stay what they are: bf16 has fp32's range)."""
    precision = ctx.option("precision", "fp32")
    if precision not in ("int8", "bf16") or node.attrs.get("table_precision", "fp32") != "fp32":
        return None
    table = graph.param_array(node.inputs[0])
    if table is None or node.inputs[0].type.dtype != "float32":
        return Reject("the tables are not an fp32 parameter")
    if TABLES in set(ctx.option("keep_fp32", ())):
        return Reject("kept fp32 (--keep-fp32 tables)")
    if ctx.option("auto"):
        precision = auto_table_format(node, table.nbytes, ctx.option("cache_bytes", 32 << 20))
    if precision == "bf16":
        return Match([node], {"precision": "bf16"})
    lo, hi = 0.0, 0.0
    for _, chunk in chunked(table.reshape(-1)):  # no copy of GB tables, nor all of a spilled one mapped at once
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN propagates through min and max
        return Reject("kept fp32: a table holds NaN or inf (8-bit rows cannot carry them)")
    if max(-lo, hi) > FP16_MAX:
        return Reject("kept fp32: a table holds values beyond fp16's range (the rows' scale and bias are fp16)")
    return Match([node], {"precision": "int8"})


def auto_table_format(node: Node, nbytes: int, cache_bytes: int) -> str:
    """`auto`'s table format: the one whose rows touch the fewest cache lines per lookup (what an out-of-cache
    gather waits for), bf16 on a tie (no dequantization arithmetic, a smaller error); 8-bit only for
    tables beyond the last-level cache. Measured (bench/table_formats.py, AMD EPYC, 1 thread, dense fp32):
    bf16 tables 1.0-1.7x fp32 for RMC1 and RMC2 at 41 MB and 410 MB; 8-bit 0.7-1.3x (RMC1's 36-byte rows
    touch 1.5 lines, bf16's 64-byte rows one; RMC2's 68 and 128 bytes both two)."""
    lines = table_lines([(dim, bag) for _, dim, bag, *_ in batched_table_layout(node.attrs)])
    return "int8" if lines["int8"] < lines["bf16"] and nbytes > cache_bytes else "bf16"


def _rewrite_tables(b: Builder, node: Node, match: Match) -> Value:
    return b.op(node.op, node.inputs, dict(node.attrs, table_precision=match.data["precision"]), name=node.output.name)


def _rewrite(b: Builder, dense: Node, match: Match) -> Value:
    return b.op("dense", dense.inputs, dict(dense.attrs, precision=match.data["precision"]),
                name=dense.output.name)


class QuantizeDense(RewritePass):
    name = "quantize-dense"
    summary = "mark dense layers int8 or bf16 where asked and the target has a kernel for it"
    changes_numbers = True  # translation validation re-bases on its numbers (see recc.compiler.accuracy)

    def run(self, graph: Graph, ctx: PassContext) -> PassStats:
        rule = f"dense-to-{ctx.option('precision', 'fp32')}"
        self.rules = (Rule(rule, ("dense",), lambda g, node: _match(g, node, ctx), _rewrite),
                      Rule("tables-to-auto" if ctx.option("auto") else
                           "tables-to-int8-rowwise" if ctx.option("precision") == "int8" else "tables-to-bf16",
                           ("batched_embedding_bag",),
                           lambda g, node: _match_tables(g, node, ctx), _rewrite_tables))
        return super().run(graph, ctx)
