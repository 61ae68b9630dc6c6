"""Reduced-precision systems for `recc bench`, each at its best configuration on this CPU:

- recc-int8:         `recc.compile(..., precision="int8")`: dense layers int8 (AMX / AVX512-VNNI / AVX2 kernels),
                     the batched lookup's tables 8-bit row-wise.
- recc-bf16:         `recc.compile(..., precision="bf16")`: dense layers bf16 (AMX-BF16, else bf16 weights
                     with fp32 math), the batched lookup's tables bf16.
- recc-auto:         `recc.compile(..., precision="auto")`: int8 where it pays and the accuracy bound allows.
- torch-int8-onednn: `torch.ao.quantization.quantize_dynamic`: nn.Linear dynamic int8 (qint8 weights),
                     nn.EmbeddingBag / nn.Embedding 8-bit row-wise (FBGEMM's `embedding_bag_byte_rowwise`
                     kernels), with `torch.backends.quantized.engine = "onednn"` (AMX where the CPU has it).
- torch-int8-x86:    the same with the "x86" engine (FBGEMM + oneDNN heuristics, PyTorch's CPU default).
- torch-bf16:        the whole module in bfloat16 (`model.to(torch.bfloat16)`, float inputs cast outside
                     the timed call), the fastest bf16 form measured here (autocast was slower).
- fbgemm-tbe-int8:   FBGEMM's table-batched embeddings with 8-bit row-wise tables, dense layers fp32 (bench/tbe.py).
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

REDUCED_SYSTEMS = ("recc-int8", "recc-bf16", "recc-auto", "torch-int8-onednn", "torch-int8-x86", "torch-bf16", "ort-int8",
                   "fbgemm-tbe-int8")  # built by bench/tbe.py


class ReccReduced(Recc):
    def __init__(self, precision: str) -> None:
        self.precision = precision
        self.name = f"recc-{precision}"

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]:
        import recc

        start = time.perf_counter()
        self.compiled = recc.compile(model, model.example_inputs(COMPILE_EXAMPLE_BATCH, seed=0),
                                     name=getattr(model, "name", None), threads=threads, precision=self.precision,
                                     target=self.target)
        report = self.compiled.report
        return {"compile_s": round(time.perf_counter() - start, 2), "threads": threads, "target": self.target,
                "precision": report.get("precision"), "kernels": report.get("kernels")}


class TorchDynamicInt8(Eager):
    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.name = f"torch-int8-{engine}"

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]:
        import warnings

        from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig

        torch.backends.quantized.engine = self.engine
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
            # Linear: dynamic int8; EmbeddingBag / Embedding: FBGEMM's 8-bit row-wise tables (quint8
            # weights with a float scale and bias per row: embedding_bag_byte_rowwise_offsets)
            spec = {nn.Linear: default_dynamic_qconfig, nn.EmbeddingBag: float_qparams_weight_only_qconfig,
                    nn.Embedding: float_qparams_weight_only_qconfig}
            self.model = with_contiguous_ids(torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), spec))
        kinds = sorted({type(m).__module__ + "." + type(m).__name__ for m in self.model.modules()
                        if "quantized" in type(m).__module__})
        return {"mode": f"quantize_dynamic(Linear qint8, EmbeddingBag/Embedding 8-bit row-wise), engine {self.engine}",
                "quantized_modules": kinds, "torch_threads": torch.get_num_threads()}


class ContiguousIds(nn.Module):
    """A quantized EmbeddingBag / Embedding given contiguous ids (FBGEMM's row-wise kernels refuse a strided
    view such as ids[:, t], which the float modules accept)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, ids: torch.Tensor, *rest: Any, **kwargs: Any) -> torch.Tensor:
        rest = tuple(r.contiguous() if isinstance(r, torch.Tensor) else r for r in rest)
        return self.inner(ids.contiguous(), *rest, **kwargs)


def with_contiguous_ids(model: nn.Module) -> nn.Module:
    for qualified, module in list(model.named_modules()):
        if type(module).__name__ in ("EmbeddingBag", "Embedding") and "quantized" in type(module).__module__:
            parent_name, _, child = qualified.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, ContiguousIds(module))
    return model


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
    if name in ("recc-int8", "recc-bf16", "recc-auto"):
        return ReccReduced(name.removeprefix("recc-"))
    if name.startswith("torch-int8-"):
        return TorchDynamicInt8(name.removeprefix("torch-int8-"))
    if name == "torch-bf16":
        return TorchBf16()
    if name == "ort-int8":
        return OrtInt8()
    if name == "fbgemm-tbe-int8":
        from recc.bench.tbe import FbgemmTbe

        return FbgemmTbe(int8=True)
    raise ValueError(f"unknown reduced-precision system {name!r}; valid: {', '.join(REDUCED_SYSTEMS)}")

