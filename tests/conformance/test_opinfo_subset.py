"""The CI tier of the OpInfo conformance run (docs/conformance.md): a fixed set of OpInfo ops that pass
today, across the op families recommendation models use, each in float32 and int64 where OpInfo has it,
through the same harness as `python -m recc.bench.opinfo` (first 2 samples, compiled at their exact shapes,
compared with eager on the sample and on a fresh seeded input). Any of them regressing fails the test.
About 1.5 minutes on 2 cores (each sample is a TVM build)."""

from __future__ import annotations

from typing import Any

import pytest

from recc.bench.opinfo import DTYPES, check_op, op_database, select_ops

pytestmark = pytest.mark.slow

SUBSET = (
    # elementwise unary
    "abs", "exp", "log", "sqrt", "sigmoid", "tanh", "nn.functional.gelu", "nn.functional.relu",
    # elementwise binary, comparison, selection
    "add", "mul", "div.floor_rounding", "maximum", "eq", "where", "masked_fill",
    # reductions and scans
    "prod", "argmax", "var", "cumsum",
    # sorting (ties of stable=False sorts and topk compared as recc.bench.opinfo_ties says)
    "msort", "quantile", "argsort", "topk",
    # matmul
    "mm", "bmm", "addmm",
    # normalization
    "softmax", "log_softmax", "nn.functional.layer_norm",
    # indexing
    "gather", "__getitem__", "index_put", "masked_scatter",
    # shapes and dtypes
    "cat", "reshape", "permute", "transpose", "split", "squeeze", "nn.functional.pad.constant", "to",
    # windows: transposed convolution, max pooling with indices, adaptive pooling, interpolation
    "nn.functional.conv_transpose2d", "nn.functional.max_pool2d", "nn.functional.adaptive_avg_pool2d",
    "nn.functional.interpolate.bilinear",
)


@pytest.fixture(scope="module")
def opinfos() -> dict[str, Any]:
    ops = select_ops(op_database(), SUBSET)
    return {name: next(op for op in ops if name in (op.name, f"{op.name}.{op.variant_test_name}"))
            for name in SUBSET}


@pytest.mark.parametrize("name", SUBSET)
def test_opinfo_op_compiles_and_matches_eager(name: str, opinfos: dict[str, Any]) -> None:
    op = opinfos[name]
    dtypes = [d for d in DTYPES.values() if d in op.supported_dtypes("cpu")]
    assert dtypes, f"{name}: OpInfo supports neither float32 nor int64"
    for dtype in dtypes:
        record = check_op(op, dtype, samples=2)
        evaluated = [s for s in record["samples"] if s["status"] != "skipped"]
        assert record["status"] == "passed", f"{name} {record['dtype']}: {record['status']}: {record['reason']}"
        assert evaluated and all(s["status"] == "passed" for s in evaluated), record
