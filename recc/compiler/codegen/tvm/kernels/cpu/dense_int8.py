"""The int8 dense kernels (semantics: recc/compiler/quantize.py): y = act(x @ w.T + b) with activations
quantized per row to uint8, weights per output channel to int8, int32 accumulation and an fp32 epilogue.

Two kernels, one per x86 int8 dot-product instruction, chosen by the target's features:
- AMX (`amx-int8`): `tdpbusd` on tiles; a task computes a 32 x 32 output block as 2 x 2 tiles of 16 x 16
  int32 (tmm0-3), loading two 16 x 64-byte activation tiles (tmm4-5) and two weight tiles (tmm6-7) per 64
  values of K. The process must hold the AMX state (runtime/host.py request_amx) or it dies with SIGILL.
- AVX512-VNNI (`avx512vnni`): `vpdpbusd` (16 lanes x 4 u8 x s8 products per instruction), a register tile
  of 8 rows x 32 outputs (16 accumulators hide the instruction's latency).
Both read the weights in one packed layout, Wp[N/16, K/4, 64] int8 (`pack_int8`): 16 outputs x 4
consecutive k per 64 bytes, which is a VNNI operand and, 16 rows of it, an AMX weight tile. K is padded to
64 and N to 32 with zeros. The kernel quantizes x's rows itself, first, into a workspace (rows padded to
whole tiles, ROW_PAD; zero rows are never stored): no separate kernel call or output per layer.

The epilogue per output: y = act(xs * ws[n] * acc + (b[n] - xs*zp * (ws * colsum(wq))[n])), where the
row's (xs, xs*zp) come from quantizing it (quantize_macro) and ws, ws * colsum and b are packed at compile time.
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from recc.compiler.codegen.tvm.kernels.cpu.common import activation_expr
from recc.compiler.codegen.tvm.kernels.cpu.dense_int8_static import static_quantize_macro
from recc.compiler.quantize import quantize_weight_int8

VNNI_ROWS = 6  # rows of a VNNI register tile
# rows the quantized activations are padded to, per kernel: whole tiles are read, never past the end
ROW_PAD = {"amx": 32, "vnni": VNNI_ROWS, "avx2": 6}
K_PAD = 64  # bytes of one AMX tile row
N_PAD = 32  # outputs of an AMX output block (two tiles)
SUPER_ROWS = 4  # row blocks per task at large batches (super_rows)
SERIAL_BELOW = 1 << 18  # elements (quantize) or multiply-adds / 64 (dense) below which no thread pool is used


def padded_k(k: int) -> int:
    return -(-k // K_PAD) * K_PAD


def padded_n(n: int) -> int:
    return -(-n // N_PAD) * N_PAD


def pack_int8(w: np.ndarray, bias: np.ndarray | None, lanes: int = 16, group: int = 4) -> dict[str, np.ndarray]:
    """Quantize fp32 weights [N, K] and pack them: {"w": [Np/lanes, Kp/group, lanes * group] int8 (`lanes`
    outputs x `group` consecutive k; 16 x 4 for VNNI/AMX), "scale": ws [Np], "colsum": ws * colsum(wq)
    [Np], "bias": b [Np]} (Np, Kp padded with zeros)."""
    n, k = w.shape
    kp, np_ = padded_k(k), padded_n(n)
    wq, ws = quantize_weight_int8(w)
    full = np.zeros((np_, kp), np.int8)
    full[:n, :k] = wq
    packed = (full.reshape(np_ // lanes, lanes, kp // group, group).transpose(0, 2, 1, 3)
              .reshape(np_ // lanes, kp // group, lanes * group))

    def pad(v: np.ndarray) -> np.ndarray:
        out = np.zeros(np_, np.float32)
        out[:n] = v
        return out

    colsum = wq.astype(np.int64).sum(axis=1).astype(np.float32)
    return {"w": np.ascontiguousarray(packed), "scale": pad(ws), "colsum": pad(ws * colsum),
            "bias": pad(np.zeros(n, np.float32) if bias is None else np.asarray(bias, np.float32))}


def scratch_rows(m, kind: str):
    """The rows of the quantized activations for m rows (whole tiles of the kernel `kind`)."""
    return (m + ROW_PAD[kind] - 1) // ROW_PAD[kind] * ROW_PAD[kind]


def row_stride(K: int) -> int:
    """Bytes between two rows of the quantized activations: Kp plus one cache line, so the 32 rows of an
    AMX block never share a few L1 sets (at a 2 KiB stride they fall in 2 of 64: K = 2048 ran 3x slower)."""
    return padded_k(K) + 64


def quantize_macro(K: int, dtype: str = "uint8"):
    """The macro `quantize(X, Xq, P, r)`: row r of X[m, K] quantized to uint8 values into Xq[r, :K] (of
    `dtype`: the AVX2 kernel reads them as int16) with its own scale and zero point (P[r] = (scale, scale *
    zero point)), Xq[r, K:] zero. The padding rows (m..mp) are left as they are: their products are
    computed and never stored."""
    XS = row_stride(K)
    V = 16
    KV = K // V * V

    def exponent(x):
        return T.bitwise_and(T.reinterpret("int32", x), T.int32(0x7F800000))

    def to_u8(v):  # clamp first: a float -> int conversion of anything out of range is undefined; on
        # [0.5, 255.5] truncation is floor (T.floor became a call per lane: 4x slower quantization)
        return T.Cast(dtype, T.Cast("int32", T.min(T.float32(255), T.max(T.float32(0), v)) + T.float32(0.5)))

    @T.macro
    def row(X, Xq, P, r):
        lo = T.alloc_buffer((V,), "float32")
        hi = T.alloc_buffer((V,), "float32")
        fin = T.alloc_buffer((V,), "int32")  # max exponent bits: 0x7F800000 where NaN or +-inf
        stats = T.alloc_buffer((4,), "float32")
        for v in T.vectorized(V):
            lo[v] = T.float32(0)
            hi[v] = T.float32(0)
            fin[v] = T.int32(0)
        for k0 in range(KV // V):
            for v in T.vectorized(V):
                lo[v] = T.min(lo[v], X[r, k0 * V + v])
                hi[v] = T.max(hi[v], X[r, k0 * V + v])
                fin[v] = T.max(fin[v], exponent(X[r, k0 * V + v]))
        for k in range(KV, K):
            lo[0] = T.min(lo[0], X[r, k])
            hi[0] = T.max(hi[0], X[r, k])
            fin[0] = T.max(fin[0], exponent(X[r, k]))
        stats[0] = lo[0]
        stats[1] = hi[0]
        for v in range(1, V):
            stats[0] = T.min(stats[0], lo[v])
            stats[1] = T.max(stats[1], hi[v])
            fin[0] = T.max(fin[0], fin[v])
        span = stats[1] - stats[0]
        # NaN scale for a row holding NaN or +-inf (integer bits: fast-math may fold x - x to 0)
        P[r, 0] = T.Select(fin[0] == T.int32(0x7F800000), T.float32(float("nan")),
                           T.Select(span > T.float32(0), span / T.float32(255), T.float32(1)))
        stats[3] = T.float32(1) / P[r, 0]
        zp = T.floor(T.min(T.float32(255), T.max(T.float32(0), (T.float32(0) - stats[0]) * stats[3]))
                     + T.float32(0.5))
        P[r, 1] = P[r, 0] * zp
        for k0 in range(KV // V):
            for v in T.vectorized(V):
                Xq[r, k0 * V + v] = to_u8(X[r, k0 * V + v] * stats[3] + zp)
        for k in range(KV, K):
            Xq[r, k] = to_u8(X[r, k] * stats[3] + zp)
        for k in range(K, XS):
            Xq[r, k] = T.Cast(dtype, 0)

    return row


def int8_value(acc, P, S, CS, B, r, row0, col0, v):
    """The int8 epilogue's pre-activation output (module docstring)."""
    return (P[row0 + r, 0] * S[col0 + v] * T.Cast("float32", acc[r, v])
            + (B[col0 + v] - P[row0 + r, 1] * CS[col0 + v]))


def epilogue(N: int, activation: str, alpha: float, R: int, C: int, value=int8_value):
    """The macro `store(acc, P, S, CS, B, Y, m, row0, col0)` storing an R x C accumulator block `acc` (rows
    row0.., outputs col0..) as act(value(...)) into Y[m, N]."""
    full = N % C == 0

    def out(acc, P, S, CS, B, r, row0, col0, v):
        return activation_expr(activation, value(acc, P, S, CS, B, r, row0, col0, v), alpha)

    @T.macro
    def store(acc, P, S, CS, B, Y, m, row0, col0):
        # Every accumulator is read, whatever m and N: TVM shrinks a stack buffer to the part TIR reads
        # (at batch 1, row 0), and the AMX tile store writes all of it
        for r in range(R):
            row = T.alloc_buffer((C,), "float32")
            for v in T.vectorized(C):
                row[v] = out(acc, P, S, CS, B, r, row0, col0, v)  # P has the padded rows
            if row0 + r < m:
                if full:
                    for v in T.vectorized(C):
                        Y[row0 + r, col0 + v] = row[v]
                else:
                    for v in range(C):
                        if col0 + v < N:
                            Y[row0 + r, col0 + v] = row[v]

    return store


def _amx(name: str, *args):
    return T.evaluate(T.call_llvm_intrin("void", f"llvm.x86.{name}", *args))


def amx_block(op: str, KB: int, kstep: int, a_stride: int, acc_dtype: str, store):
    """The macro `block(A, a0, Wp, P, S, CS, B, Y, m, row0, cb)`: a 32 x 32 output block as 2 x 2 AMX tiles
    (tmm0-3), over KB steps of `kstep` elements of A's rows a0.. (two 16-row tiles, tmm4-5; `a_stride` bytes
    apart) and weight tiles Wp[2 cb + h, 16 kb:16 kb + 16] (tmm6-7), multiplied by `op` ("tdpbusd": u8 x s8
    -> int32, "tdpbf16ps": bf16 -> fp32); then stored to a stack block and through `store` (epilogue)."""

    @T.macro
    def block(A, a0, Wp, P, S, CS, B, Y, m, row0, cb):
        acc = T.alloc_buffer((32, 32), acc_dtype)
        _amx("tilezero", T.int8(0))
        _amx("tilezero", T.int8(1))
        _amx("tilezero", T.int8(2))
        _amx("tilezero", T.int8(3))
        for kb in range(KB):
            _amx("tileloadd64", T.int8(4), T.address_of(A[a0, kb * kstep]), T.int64(a_stride))
            _amx("tileloadd64", T.int8(5), T.address_of(A[a0 + 16, kb * kstep]), T.int64(a_stride))
            _amx("tileloadd64", T.int8(6), T.address_of(Wp[cb * 2, kb * 16, 0]), T.int64(64))
            _amx("tileloadd64", T.int8(7), T.address_of(Wp[cb * 2 + 1, kb * 16, 0]), T.int64(64))
            _amx(op, T.int8(0), T.int8(4), T.int8(6))
            _amx(op, T.int8(1), T.int8(4), T.int8(7))
            _amx(op, T.int8(2), T.int8(5), T.int8(6))
            _amx(op, T.int8(3), T.int8(5), T.int8(7))
        _amx("tilestored64", T.int8(0), T.address_of(acc[0, 0]), T.int64(128))
        _amx("tilestored64", T.int8(1), T.address_of(acc[0, 16]), T.int64(128))
        _amx("tilestored64", T.int8(2), T.address_of(acc[16, 0]), T.int64(128))
        _amx("tilestored64", T.int8(3), T.address_of(acc[16, 16]), T.int64(128))
        store(acc, P, S, CS, B, Y, m, row0, cb * 32)

    return block


def dense_amx(K: int, N: int, activation: str = "none", alpha: float = 0.01, act=None):
    """PrimFunc (X[m, K] f32, Wp[Np/16, Kp/4, 64] i8, S[Np], CS[Np], B[Np], CFG[64]) -> (Y[m, N] f32,
    scratch Xq[mp, row_stride(K)] u8, P[mp, 2] f32) on AMX (mp = m padded to ROW_PAD); CFG is
    `tile_config()`, an input rather than 64 bytes written on every call. `act`: the calibrated
    activation (scale, zero point) of static quantization (dense_int8_static), None: per row."""
    KP, NP = padded_k(K), padded_n(N)
    KB, NB = KP // 64, NP // 32
    store = epilogue(N, activation, alpha, 32, 32)
    block = amx_block("tdpbusd", KB, 64, row_stride(K), "int32", store)

    return _dense_func(K, N, ROW_PAD["amx"], super_tasks, amx_rows(block, NB), act=act)


def amx_rows(block, NB: int):
    """The macro `rows(A, P, Wp, S, CS, B, CFG, Y, m, f)`: super-block f of 32-row blocks (super_rows)
    against each of the NB 32-output weight blocks in turn, through `block` (amx_block)."""

    @T.macro
    def rows(A, P, Wp, S, CS, B, CFG, Y, m, f):
        _amx("ldtilecfg", T.address_of(CFG[0]))
        for cb in range(NB):
            for i in range(super_rows(m)):
                if f * super_rows(m) + i < (m + 31) // 32:
                    block(A, (f * super_rows(m) + i) * 32, Wp, P, S, CS, B, Y, m, (f * super_rows(m) + i) * 32, cb)
        _amx("tilerelease")

    return rows


def super_tasks(m):
    """How many super-blocks (amx_rows tasks) m rows make."""
    return ((m + 31) // 32 + super_rows(m) - 1) // super_rows(m)


def super_rows(m):
    """Row blocks of 32 a task runs against each weight block before the next: 4 from batch 256 on, so a
    big layer's weights (2.6 MB for 2560 x 1024: beyond L2) stream from L3 once per 128 rows rather than
    per 32; 1 below, where tasks are few and both cores need one."""
    return T.Select(m >= 256, T.int64(SUPER_ROWS), T.int64(1))


def dense_vnni(K: int, N: int, activation: str = "none", alpha: float = 0.01, act=None):
    """The same PrimFunc as dense_amx on AVX512-VNNI (CFG unused): register tiles of 6 rows x 32 outputs;
    the rows past the last whole tile one by one (measured, AMD EPYC, 1 thread: WnD at batch 1 went from
    1.5x to 2.4x fp32, RMC3 from 1.8x to 3.0x, once batch 1 stopped computing 6 rows)."""
    KP = padded_k(K)
    # 6 rows: the 6 x 32 int32 accumulators (768 bytes) stay on the stack and LLVM keeps them in
    # registers; TVM moves a buffer of 1 KiB or more to a heap workspace, and 8 rows ran 4x slower from it
    KG, R = KP // 4, VNNI_ROWS
    return _dense_func(K, N, R, *row_tasks(lambda rows, store: _vnni_block(KG, store, rows), R, 32, N, activation, alpha),
                       act=act)


def row_tasks(make_block, R: int, C: int, N: int, activation: str, alpha: float):
    """(tasks(m), task macro) for register-tile kernels: task f runs rows f // NB * R.. (NB = outputs / C
    blocks holding real outputs) against output block f % NB through `make_block(rows, store)` (a macro
    block(Xq, P, Wp, S, CS, B, Y, m, row0, cb)): R rows at a time, the rows past the last whole tile one
    by one (batch 1 would compute R rows for 1)."""
    NB = -(-N // C)
    tile = make_block(R, epilogue(N, activation, alpha, R, C))
    single = make_block(1, epilogue(N, activation, alpha, 1, C))

    @T.macro
    def task(Xq, P, Wp, S, CS, B, CFG, Y, m, f):
        row0 = f // NB * R
        if row0 + R <= m:
            tile(Xq, P, Wp, S, CS, B, Y, m, row0, f % NB)
        else:
            for r in range(m - row0):
                single(Xq, P, Wp, S, CS, B, Y, m, row0 + r, f % NB)

    return (lambda m: (m + R - 1) // R * NB), task


def _vnni_block(KG: int, store, R: int):
    """The macro `block(Xq, P, Wp, S, CS, B, Y, m, row0, cb)`: R rows x 32 outputs by `vpdpbusd`."""

    @T.macro
    def block(Xq, P, Wp, S, CS, B, Y, m, row0, cb):
        acc = T.alloc_buffer((R, 32), "int32")
        for r in T.unroll(R):
            acc[r, T.ramp(0, 1, 16)] = T.broadcast(T.int32(0), 16)
            acc[r, T.ramp(16, 1, 16)] = T.broadcast(T.int32(0), 16)
        for g in range(KG):
            for r in T.unroll(R):
                for h in T.unroll(2):
                    acc[r, T.ramp(h * 16, 1, 16)] = T.call_llvm_pure_intrin(
                        "int32x16", "llvm.x86.avx512.vpdpbusd.512", acc[r, T.ramp(h * 16, 1, 16)],
                        T.reinterpret("int8x64", T.broadcast(T.reinterpret("int32", Xq[row0 + r, T.ramp(g * 4, 1, 4)]), 16)),
                        Wp[cb * 2 + h, g, T.ramp(0, 1, 64)])
        store(acc, P, S, CS, B, Y, m, row0, cb * 32)

    return block


def _dense_func(K: int, N: int, pad: int, tasks, task, xq_dtype: str = "uint8", lanes: int = 16, group: int = 4,
                act=None):
    """The int8 dense PrimFunc (X, Wp, S, CS, B, CFG) -> (Y, Xq, P): x's rows quantized into Xq (of
    `xq_dtype`) and P (mp rows: m padded to `pad`; outputs rather than a workspace, so the VM's memory pool
    reuses them: a per-call heap block of 0.7 MB page-faulted on every call), then `task(Xq, P, Wp, S, CS,
    B, CFG, Y, m, f)` for f < tasks(m); each phase in parallel when big enough. Wp is pack_int8(lanes, group).
    `act`: static (scale, zero point) of calibrated activations (dense_int8_static), else per row."""
    KP, NP, XS = padded_k(K), padded_n(N), row_stride(K)
    quantize = quantize_macro(K, xq_dtype) if act is None else static_quantize_macro(K, XS, *act, dtype=xq_dtype)

    @T.prim_func(private=True)
    def dense(var_x: T.handle, Wp: T.Buffer((NP // lanes, KP // group, lanes * group), "int8"),
              S: T.Buffer((NP,), "float32"),
              CS: T.Buffer((NP,), "float32"), B: T.Buffer((NP,), "float32"), CFG: T.Buffer((64,), "uint8"),
              var_y: T.handle, var_xq: T.handle, var_p: T.handle):
        T.func_attr({"tir.noalias": True})
        m = T.int64()
        mp = T.int64()
        X = T.match_buffer(var_x, (m, K), "float32")
        Y = T.match_buffer(var_y, (m, N), "float32")
        Xq = T.match_buffer(var_xq, (mp, XS), xq_dtype)
        P = T.match_buffer(var_p, (mp, 2), "float32")
        if m * K <= SERIAL_BELOW:
            for r in range(m):
                quantize(X, Xq, P, r)
        else:
            for r in T.parallel(m):
                quantize(X, Xq, P, r)
        if m * KP * NP <= SERIAL_BELOW * 64:
            for f in range(tasks(m)):
                task(Xq, P, Wp, S, CS, B, CFG, Y, m, f)
        else:
            for f in T.parallel(tasks(m)):
                task(Xq, P, Wp, S, CS, B, CFG, Y, m, f)

    return dense


def tile_config() -> np.ndarray:
    """The AMX tile configuration: palette 1, 8 tiles of 16 rows x 64 bytes."""
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1
    cfg[16:32:2] = 64  # bytes per row (uint16, little-endian)
    cfg[48:56] = 16  # rows
    return cfg


KERNELS = {"amx": dense_amx, "vnni": dense_vnni}
