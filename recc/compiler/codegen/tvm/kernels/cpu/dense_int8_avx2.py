"""The int8 dense kernel for CPUs with AVX2 and no int8 dot product (AMD EPYC of the Zen 2/3 kind, Intel
before Ice Lake): the same semantics as the AMX and VNNI kernels (recc/compiler/quantize.py), bit for bit
in the int32 accumulators.

AVX2's u8 x s8 instruction, `vpmaddubsw`, adds two products into a saturating int16: 255 x 127 twice is
64,770, beyond 32,767, so it would change the numbers (PyTorch's fbgemm engine avoids that by quantizing
activations to 7 bits, `reduce_range`; recc keeps one semantics on every CPU). This kernel uses
`vpmaddwd` instead: 16 int16 x int16 products added in pairs into 8 int32 lanes, exact. The quantized
activations are stored as int16 (their values still 0..255) and the weights stay int8 in memory (a
quarter of fp32's bytes), packed as 8 outputs x 2 consecutive k per 16 bytes (pack_int8(lanes=8,
group=2)), sign-extended to int16 once per load and shared by the tile's rows.

Register tile: 6 rows x 16 outputs = 12 ymm accumulators, 2 weight vectors and a broadcast (16 ymm).
Per 16 multiply-adds: one `vpmaddwd` and one `vpaddd` (fp32's FMA does 8 per instruction); with the
bytes of the weights at a quarter, the gain over fp32 is largest where the layer streams its weights.
"""

from __future__ import annotations

from tvm.script import tirx as T

from recc.compiler.codegen.tvm.kernels.cpu.dense_int8 import (
    ROW_PAD,
    _dense_func,
    padded_k,
    row_tasks,
)

LANES, GROUP = 8, 2  # the weight packing: 8 outputs x 2 consecutive k per 16 bytes
COLS = 16  # outputs of a register tile (two ymm of int32)


def dense_avx2(K: int, N: int, activation: str = "none", alpha: float = 0.01, act=None):
    """The int8 dense PrimFunc (X, Wp, S, CS, B, CFG) -> (Y, Xq int16 scratch, P) of dense_int8._dense_func
    on AVX2 (CFG unused), Wp = pack_int8(w, b, lanes=8, group=2)["w"]; `act`: calibrated (scale, zero point)."""
    KG, R = padded_k(K) // GROUP, ROW_PAD["avx2"]
    tasks, task = row_tasks(lambda rows, store: _block(KG, store, rows), R, COLS, N, activation, alpha)
    return _dense_func(K, N, R, tasks, task, xq_dtype="int16", lanes=LANES, group=GROUP, act=act)


def _block(KG: int, store, R: int):
    """The macro `block(Xq, P, Wp, S, CS, B, Y, m, row0, cb)`: rows row0..row0+R x outputs 16 cb.. over KG
    pairs of k (`vpmaddwd` into int32, then `vpaddd`: the only dependency between steps, 1 cycle)."""

    @T.macro
    def block(Xq, P, Wp, S, CS, B, Y, m, row0, cb):
        acc = T.alloc_buffer((R, COLS), "int32")  # <= 384 bytes: kept in registers (under TVM's 1 KiB heap limit)
        for r in T.unroll(R):
            acc[r, T.ramp(0, 1, 8)] = T.broadcast(T.int32(0), 8)
            acc[r, T.ramp(8, 1, 8)] = T.broadcast(T.int32(0), 8)
        for g in range(KG):
            for r in T.unroll(R):
                for h in T.unroll(2):
                    acc[r, T.ramp(h * 8, 1, 8)] = acc[r, T.ramp(h * 8, 1, 8)] + T.call_llvm_pure_intrin(
                        "int32x8", "llvm.x86.avx2.pmadd.wd",
                        T.reinterpret("int16x16", T.broadcast(T.reinterpret("int32", Xq[row0 + r, T.ramp(g * 2, 1, 2)]), 8)),
                        T.Cast("int16x16", Wp[cb * 2 + h, g, T.ramp(0, 1, 16)]))
        store(acc, P, S, CS, B, Y, m, row0, cb * COLS)

    return block
