"""What a cell computes: its body evaluated on random leaves (float64) against the GRU and AUGRU updates."""

from __future__ import annotations

import numpy as np

from recc.compiler.interpreter import KERNELS
from recc.compiler.ir import Graph, Node, Value


def _reference(kind: str, h: np.ndarray, x: np.ndarray, g: np.ndarray, score: np.ndarray | None) -> np.ndarray:
    H = h.shape[1]
    sig = lambda v: 1 / (1 + np.exp(-v))
    r, z = sig(x[:, :H] + g[:, :H]), sig(x[:, H:2 * H] + g[:, H:2 * H])
    n = np.tanh(x[:, 2 * H:] + r * g[:, 2 * H:])
    return h + z * score * (n - h) if kind == "augru" else n + z * (h - n)


def cell_update(graph: Graph, cell_nodes: list[Node], hidden: Node, h_out: Value,
                x_leaf: dict[int, tuple[int, int]], score_leaf: int | None) -> str | None:
    """Evaluate the body on random leaves (float64); return the update it computes ("gru" or "augru"), or
    None. `hidden` is the product dense(h, W_hh [3H, H]); `x_leaf` maps a leaf to its gate columns."""
    rng = np.random.default_rng(0)
    H = hidden.inputs[1].type.shape[1]
    B = 3
    for kind in (("augru",) if score_leaf is not None else ("gru",)):
        ok = True
        for _ in range(2):
            h = rng.uniform(-1, 1, (B, H))
            x = rng.uniform(-2, 2, (B, 3 * H))
            g = rng.uniform(-2, 2, (B, 3 * H))
            s = rng.uniform(0, 1, (B, 1))
            env: dict[int, np.ndarray] = {id(hidden.inputs[0]): h, id(hidden.output): g}
            for key, (off, width) in x_leaf.items():
                env[key] = x[:, off:off + width]
            if score_leaf is not None:
                env[score_leaf] = s
            for node in cell_nodes:
                args = []
                for v in node.inputs:
                    if id(v) not in env:
                        env[id(v)] = np.asarray(graph.param_array(v), np.float64).reshape(-1)[:1]
                    args.append(env[id(v)])
                env[id(node.output)] = np.asarray(KERNELS[node.op](args, node.attrs), np.float64)
            got = env[id(h_out)]
            want = _reference(kind, h, x, g, s)
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-9, atol=1e-9):
                ok = False
                break
        if ok:
            return kind
    return None


