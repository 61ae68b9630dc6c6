"""DLRM's pairwise dot interaction as one hand-written TIR kernel; one build serves every batch size m.

    dot_interaction(dim, features) -> (x[m, D], f[m, T*D], out[m, D + n(n-1)/2]),  n = T + 1

Z = [x; f_1; ...; f_T]; out[b] = [x[b], <Z_i, Z_j> for i in 1..n-1, j in 0..i-1] (the strict lower
triangle, row-major: torch.tril_indices(n, n, -1)). Only the kept products are computed (n(n-1)/2 dot
products instead of the n^2 of the batched matmul) and Z is never materialized: row 0 is read from x,
row i from f. Each dot product accumulates V lanes with vector FMAs and sums the lanes once.
Rows run serially below `serial_below_flops` of work (thread wake-up costs more than small batches),
else in parallel over the batch.
"""

from __future__ import annotations

from tvm import tirx
from tvm.script import tirx as T

from recc.compiler.codegen.tvm.kernels.cpu.common import lane_sum, lanes

SERIAL_BELOW_FLOPS = 200_000


def dot_interaction(dim: int, features: int, serial_below_flops: int = SERIAL_BELOW_FLOPS) -> tirx.PrimFunc:
    if dim < 1 or features < 1:
        raise ValueError(f"dot_interaction needs dim >= 1 and >= 1 feature, got dim={dim}, features={features}")
    D, NF = dim, features
    OUT = D + (NF + 1) * NF // 2
    V = lanes(D)
    flops_per_row = (NF + 1) * NF * D
    serial_max_m = max(0, (serial_below_flops - 1) // flops_per_row)

    @T.macro
    def dot(a, a0, bvec, b0, out, b, k):
        acc = T.alloc_buffer((V,), "float32")
        for v in T.vectorized(V):
            acc[v] = T.float32(0)
        for c in range(D // V):
            for v in T.vectorized(V):
                acc[v] = acc[v] + a[b, a0 + c * V + v] * bvec[b, b0 + c * V + v]
        out[b, k] = lane_sum(acc, V)

    @T.macro
    def one_row(x, f, out, b):
        for d in T.vectorized(D):
            out[b, d] = x[b, d]
        for i in range(NF):
            dot(f, i * D, x, 0, out, b, D + (i + 1) * i // 2)
            for j in range(i):
                dot(f, i * D, f, j * D, out, b, D + (i + 1) * i // 2 + j + 1)

    @T.prim_func(private=True)
    def interaction(var_x: T.handle, var_f: T.handle, var_out: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        x = T.match_buffer(var_x, (m, D), "float32")
        f = T.match_buffer(var_f, (m, NF * D), "float32")
        out = T.match_buffer(var_out, (m, OUT), "float32")
        if m <= serial_max_m:
            for b in range(m):
                one_row(x, f, out, b)
        else:
            for b in T.parallel(m):
                one_row(x, f, out, b)

    return interaction
