"""The layering in .importlinter (docs/architecture.md) is checked by import-linter on every test run,
and the check is live: a pass that imports codegen makes it fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess:
    linter = Path(sys.executable).with_name("lint-imports")
    command = [str(linter)] if linter.exists() else ["lint-imports"]
    return subprocess.run(command + ["--no-cache"], cwd=root, capture_output=True, text=True, timeout=300)


def test_the_tree_keeps_its_import_contracts() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_pass_importing_codegen_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "recc", tmp_path / "recc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    cse = tmp_path / "recc" / "passes" / "cse.py"
    cse.write_text(cse.read_text() + "\nfrom recc.compiler.codegen.tvm import target  # noqa: E402,F401\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "recc.passes is not allowed to import recc.compiler.codegen" in result.stdout, result.stdout
    assert "recc.passes.cse -> recc.compiler.codegen.tvm" in result.stdout
