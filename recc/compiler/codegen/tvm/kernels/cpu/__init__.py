"""recc's hand-written TIR kernels for x86 CPUs (AVX2 / AVX-512); shared pieces in common.py (register-tile
GEMM, fast_exp and activation epilogues, weight packing, softmax + weighted sum) and gather.py (the
embedding kernels' schedule and prefetch)."""
