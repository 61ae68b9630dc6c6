"""The fused dense kernel: Y = act(X @ W.T + b), hand-scheduled TIR for x86 CPUs (AVX2/AVX-512).

Schedule (each choice measured, on x86 CPUs with AVX2 and AVX-512; the numbers are given below):
- W is pre-packed at compile time as Wp[N/V, K, V] so the inner loop streams V contiguous outputs (V =
  `vector`: 16, or 32 with AVX-512).
- A register tile of `rows` x V (4 x 16 with AVX2, 6 x 32 with AVX-512: see register_tile) accumulates
  over the whole K, then the bias and activation are applied on the tile in registers (epilogue) and the
  tile is stored once.
- The parallel loop runs over (row block, column tile) pairs, a row block being `row_block` (16 for
  weights beyond 256 KiB, else 1) register
  tiles of 4 rows that reuse one column tile's packed weights [K, 16] from L2. With a block of one tile,
  a layer whose weights exceed L2 re-streams them from memory every 4 rows: 2560x1024 at batch 64 ran at
  19 GFLOP/s (1 thread), 26 with blocks of 4 tiles, 36 with 16 (torch: 32; this core's FMA peak is ~40).
  Rows left over when the batch is not a multiple of `rows` run in bands of 4, 2 and 1 rows (in parallel
  over column tiles when the layer is big: batch 1 of a big layer streams its weights on every core). One
  compiled kernel serves
  every batch size (symbolic m).
The register tile itself (accumulate, epilogue, store) is common.tile_gemm, shared with the attention and
recurrent kernels.
"""

from __future__ import annotations

from typing import Any

from tvm.script import tirx as T

from recc.compiler.codegen.tvm.kernels.cpu.common import ROWS, VECTOR, tile_gemm

# With AVX-512 a 4 x 16 tile is only 4 accumulators: the FMA units wait on their 4-cycle latency. Measured
# (1 thread, 2-core Xeon with AVX-512, relu layers at batch 1024/256; torch's 2048^3 GEMM: 156-164 GFLOP/s):
# 4x16 87, 8x16 134-143, 12x16 122-149, 4x32 136-153, 5x32 143-162, 6x32 150-170 GFLOP/s. 6 x 32 (12
# accumulators, 2 weight loads and 6 broadcasts per 12 FMAs) is the AVX-512 tile; layers too narrow for
# 32-wide tiles (padding) use 8 x 16.
TILE_AVX512 = (6, 32)
ROWS_AVX512 = 8  # rows of the 16-wide AVX-512 tile
SERIAL_BELOW_MACS = 200_000  # work per call below which the kernel does not use the thread pool


def default_row_block(k: int, n: int) -> int:
    """16 tiles per block when the weights outgrow L2 (they are re-read per row block), else 1: small
    layers need the parallelism more than the reuse (128x64 at batch 256, 2 threads: 116 us with 16, 58
    with 1). `recc compile --tune` measures instead."""
    return 16 if 4 * k * n >= 256 * 1024 else 1


def register_tile(target: Any) -> tuple[int, int]:
    """(rows, vector) of the dense register tile for a TVM target: TILE_AVX512 where it has AVX-512, else
    (ROWS, VECTOR)."""
    from tvm.target import codegen

    return TILE_AVX512 if target is not None and codegen.target_has_features("avx512f", target) else (ROWS, VECTOR)


def tile_for(n: int, tile: tuple[int, int]) -> tuple[int, int]:
    """The tile for a layer of n outputs: a wide vector only where padding n up to it wastes little."""
    rows, vector = tile
    return (rows, vector) if vector == VECTOR or n % vector == 0 or n >= 8 * vector else (ROWS_AVX512, VECTOR)


def dense_kernel(k: int, n: int, activation: str = "none", alpha: float = 0.01, row_block: int | None = None,
                 rows: int = ROWS, vector: int = VECTOR, bf16: bool = False):
    """PrimFunc (X[m, k], Wp[ceil(n/vector), k, vector], B[n]) -> Y[m, n] for any m; a register tile is
    `rows` x `vector` (pack the weights with the same `vector`). `bf16`: Wp holds bf16 bits and x is
    rounded to bf16 as it is read (common.tile_gemm): the bf16 layer on CPUs without AMX-BF16."""
    assert 1 <= rows <= 8, "leftover rows run in bands of 4, 2 and 1"
    NT = -(-n // vector)
    NV, MR, K, N = vector, rows, k, n
    RB = row_block if row_block is not None else default_row_block(k, n)

    # below this many multiply-adds the rows run on the calling thread: waking the pool costs more
    serial_max_m = max(0, (SERIAL_BELOW_MACS - 1) // (K * N))

    # rows [start, start + R) of column tile jt: R x NV accumulators over the whole K, then the epilogue
    band = tile_gemm(K, NV, activation, alpha, columns=N, bf16=bf16)
    W_DTYPE = "uint16" if bf16 else "float32"

    @T.macro
    def tile(X, Wp, B, Y, m, f, t):
        if f // NT * RB + t < m // MR:
            band(X, Wp, B, Y, (f // NT * RB + t) * MR, MR, f % NT)

    # Rows left over after the full tiles (all of them at batch 1) run as bands of 4, 2 and 1 rows (the bits
    # of the leftover count): R independent accumulator rows hide the FMA latency that one row at a time
    # waited on.
    has_band4, has_band2 = MR > 4, MR > 2

    @T.macro
    def leftover_rows(X, Wp, B, Y, m, jt):
        if has_band4:
            if (m - m // MR * MR) % 8 >= 4:
                band(X, Wp, B, Y, m - (m - m // MR * MR) % 8, 4, jt)
        if has_band2:
            if (m - m // MR * MR) % 4 >= 2:
                band(X, Wp, B, Y, m - (m - m // MR * MR) % 4, 2, jt)
        if (m - m // MR * MR) % 2 >= 1:
            band(X, Wp, B, Y, m - 1, 1, jt)

    @T.prim_func(private=True)
    def dense(var_x: T.handle, Wp: T.Buffer((NT, K, NV), W_DTYPE), B: T.Buffer((N,), "float32"),
              var_y: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        X = T.match_buffer(var_x, (m, K), "float32")
        Y = T.match_buffer(var_y, (m, N), "float32")
        if m <= serial_max_m:
            for f in range(((m // MR + RB - 1) // RB) * NT):
                for t in range(RB):
                    tile(X, Wp, B, Y, m, f, t)
        else:
            for f in T.parallel(((m // MR + RB - 1) // RB) * NT):
                for t in range(RB):
                    tile(X, Wp, B, Y, m, f, t)
        # the rows left over (all of them at batch 1), per column tile; in parallel over the column tiles
        # when there is enough work: a big layer at batch 1 streams its weights from memory,
        # and two cores stream faster than one
        if (m - m // MR * MR) * (K * N) <= SERIAL_BELOW_MACS:
            for jt in range(NT):
                leftover_rows(X, Wp, B, Y, m, jt)
        else:
            for jt in T.parallel(NT):
                leftover_rows(X, Wp, B, Y, m, jt)

    return dense
