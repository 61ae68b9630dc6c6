"""Reduced-precision systems for `recc bench`, each at its best configuration on this CPU:

- recc-int8:         `recc.compile(..., precision="int8")`: dense layers int8 (AMX / AVX512-VNNI kernels),
                     the batched lookup's tables 8-bit row-wise.
- recc-bf16:         `recc.compile(..., precision="bf16")`: dense layers bf16 on AMX-BF16.
- torch-int8-onednn: `torch.ao.quantization.quantize_dynamic` (nn.Linear, qint8 weights) with
                     `torch.backends.quantized.engine = "onednn"` (oneDNN: AMX where the CPU has it).
- torch-int8-x86:    the same with the "x86" engine (FBGEMM + oneDNN heuristics, PyTorch's CPU default).
- torch-bf16:        the whole module in bfloat16 (`model.to(torch.bfloat16)`, float inputs cast outside
                     the timed call), the fastest bf16 form measured here (autocast was slower).
- ort-int8:          ONNX Runtime on `onnxruntime.quantization.quantize_dynamic` (QInt8 weights; QUInt8
                     was 6x slower here) of the ort-best export (EmbeddingBags as Gather + ReduceSum).

Their outputs are compared with eager fp32 at `--atol-reduced` (default 3e-2): the error is the
accuracy column of the tables, not a failure, unless it exceeds that.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recc.bench.systems import COMPILE_EXAMPLE_BATCH, Eager, OnnxRuntime, Recc

REDUCED_SYSTEMS = ("recc-int8", "recc-bf16", "torch-int8-onednn", "torch-int8-x86", "torch-bf16", "ort-int8")


class ReccReduced(Recc):
    def __init__(self, precision: str) -> None:
        self.precision = precision
        self.name = f"recc-{precision}"

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]:
        import recc

        start = time.perf_counter()
        self.compiled = recc.compile(model, model.example_inputs(COMPILE_EXAMPLE_BATCH, seed=0),
                                     name=getattr(model, "name", None), threads=threads, precision=self.precision)
        report = self.compiled.report
        return {"compile_s": round(time.perf_counter() - start, 2), "threads": threads,
                "precision": report.get("precision"), "kernels": report.get("kernels")}


class TorchDynamicInt8(Eager):
    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.name = f"torch-int8-{engine}"

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]:
        import warnings

        torch.backends.quantized.engine = self.engine
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
            self.model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
        return {"mode": f"quantize_dynamic(nn.Linear, qint8), engine {self.engine}",
                "torch_threads": torch.get_num_threads()}


class TorchBf16(Eager):
    name = "torch-bf16"

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]:
        self.model = copy.deepcopy(model).to(torch.bfloat16)
        return {"mode": "model.to(torch.bfloat16), float inputs cast before the call",
                "torch_threads": torch.get_num_threads()}

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> Callable[[], Any]:
        cast = tuple(x.to(torch.bfloat16) if x.is_floating_point() else x for x in inputs)
        return lambda: self.model(*cast)


class OrtInt8(OnnxRuntime):
    def __init__(self) -> None:
        super().__init__(gather_sum=True)
        self.name = "ort-int8"

    def export(self, model: nn.Module, path: Path) -> str:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory(prefix="recc-bench-onnx-float-") as tmp:
            float_path = Path(tmp) / "float.onnx"
            how = super().export(model, float_path)
            quantize_dynamic(str(float_path), str(path), weight_type=QuantType.QInt8)
        return how + " + onnxruntime.quantization.quantize_dynamic(QInt8 weights)"


def make_reduced(name: str) -> Any:
    if name in ("recc-int8", "recc-bf16"):
        return ReccReduced(name.removeprefix("recc-"))
    if name.startswith("torch-int8-"):
        return TorchDynamicInt8(name.removeprefix("torch-int8-"))
    if name == "torch-bf16":
        return TorchBf16()
    if name == "ort-int8":
        return OrtInt8()
    raise ValueError(f"unknown reduced-precision system {name!r}; valid: {', '.join(REDUCED_SYSTEMS)}")

