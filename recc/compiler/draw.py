"""Draw a graph as a standalone SVG a person can open: one row per topological generation
(networkx), one box per node (op and output type), lines for data edges. No graphviz needed."""

from __future__ import annotations

from html import escape

import networkx as nx

from recc.compiler.ir import Graph

BOX_W, BOX_H, GAP_X, GAP_Y = 220, 40, 30, 50


def graph_to_svg(graph: Graph) -> str:
    g = graph.to_networkx()
    by_id = {id(n): n for n in graph.nodes}
    layers = [sorted(layer, key=lambda k: graph.nodes.index(by_id[k])) for layer in nx.topological_generations(g)]
    pos: dict[int, tuple[float, float]] = {}
    width = max((len(layer) for layer in layers), default=1) * (BOX_W + GAP_X) + GAP_X
    for row, layer in enumerate(layers):
        offset = (width - len(layer) * (BOX_W + GAP_X)) / 2
        for col, key in enumerate(layer):
            pos[key] = (offset + col * (BOX_W + GAP_X) + GAP_X / 2, GAP_Y / 2 + row * (BOX_H + GAP_Y))
    height = len(layers) * (BOX_H + GAP_Y) + GAP_Y
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           'font-family="monospace" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>']
    for a, b in g.edges:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        out.append(f'<line x1="{x1 + BOX_W / 2:.0f}" y1="{y1 + BOX_H:.0f}" x2="{x2 + BOX_W / 2:.0f}" '
                   f'y2="{y2:.0f}" stroke="#888"/>')
    for key, (x, y) in pos.items():
        node = by_id[key]
        fused = node.origin.startswith("rule ")
        fill = "#d8f0d8" if fused else "#e8eef8"
        label = node.op + (f" [{node.attrs['activation']}]" if node.attrs.get("activation", "none") != "none" else "")
        out.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="5" fill="{fill}" '
                   'stroke="#345"/>')
        out.append(f'<text x="{x + 6:.0f}" y="{y + 16:.0f}" font-weight="bold">{escape(label)}</text>')
        out.append(f'<text x="{x + 6:.0f}" y="{y + 32:.0f}">{escape(str(node.outputs[0].type))[:34]}</text>')
        out.append(f"<title>{escape(node.origin)}</title>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
