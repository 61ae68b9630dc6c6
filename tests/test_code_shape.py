"""House rules a reviewer would otherwise check by hand: no module over 400 lines, no function over 80,
except a TIR kernel builder (a function defining a `@T.prim_func`) whose long body says why with a
`# long:` comment (a kernel's loop nest reads best in one piece)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _sources() -> list[Path]:
    return sorted(p for folder in ("recc", "tests") for p in (ROOT / folder).rglob("*.py"))


def _is_explained_kernel(node: ast.FunctionDef, lines: list[str]) -> bool:
    body = "\n".join(lines[node.lineno - 1:node.end_lineno])
    return "T.prim_func" in body and "# long:" in body


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _sources() if (n := p.read_text().count("\n")) > MAX_FILE_LINES}
    assert not long, f"modules over {MAX_FILE_LINES} lines: {long}"


def test_no_function_over_80_lines_unless_an_explained_kernel() -> None:
    long = []
    for path in _sources():
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and not _is_explained_kernel(node, lines):
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)
