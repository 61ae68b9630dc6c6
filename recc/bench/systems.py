"""The systems `recc bench` compares, each behind one small interface.

    system.setup(model, threads) -> facts (compile time, exporter, ...)
    system.prepare(inputs)       -> a zero-argument call running one inference on those inputs
    system.to_numpy(output)      -> the output as a float32 numpy array

- eager:    the PyTorch module itself (the worker runs everything inside `torch.inference_mode`).
- inductor: `torch.compile(model, dynamic=False)` by default: one static-shape graph per batch size, the
            form inductor schedules best; the first call of each batch compiles, and that time is
            reported as its compile time, separately from the timings. `dynamic=True` is an option.
- inductor-max: torch.compile at its best CPU configuration: static shapes per batch, inductor options
            `max_autotune` (GEMM templates benchmarked against the MKL/oneDNN kernels; what mode="max-autotune"
            sets, bar CUDA graphs) and `freezing` (weights folded in as constants, prepacked for the chosen
            GEMMs). Each batch compiles on its first call (first_call_s); if one takes over 120 s, later
            batch sizes compile with freezing alone, and every cell records which configuration ran.
- ort:      ONNX Runtime on `torch.onnx.export` of the model as it is (dynamo exporter, legacy one as a
            fallback); nn.EmbeddingBag becomes an ONNX `Loop` there, which we detect and report.
- ort-best: ONNX Runtime on an export of a copy of the model whose EmbeddingBags are rewritten as a
            gather plus a reduction (`embedding(ids, weight).sum(1)`), which exports as Gather+ReduceSum:
            ONNX Runtime at its best on these models.
- recc:     `recc.compile(model, example_inputs, threads=N)`; the compile time is reported.
- fbgemm-tbe, fbgemm-tbe-int8: the model with its EmbeddingBags as one FBGEMM table-batched embedding op,
            fp32 or 8-bit row-wise tables, the way TorchRec runs lookups (bench/tbe.py; the `bench-tbe` extra).

Inputs are converted to each system's native form (numpy feeds for ONNX Runtime) in `prepare`,
outside the timed call; outputs are not converted inside it either.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

SYSTEMS = ("eager", "inductor", "inductor-max", "ort", "ort-best", "recc",  # fp32; reduced precision: bench/reduced.py
           "recc-int8", "recc-bf16", "recc-auto", "torch-int8-onednn", "torch-int8-x86", "torch-bf16", "ort-int8",
           "fbgemm-tbe", "fbgemm-tbe-int8")  # FBGEMM table-batched embeddings: bench/tbe.py
COMPILE_EXAMPLE_BATCH = 4


class System(Protocol):
    name: str

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]: ...

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> Callable[[], Any]: ...

    def to_numpy(self, output: Any) -> np.ndarray: ...


class Eager:
    name = "eager"

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]:
        self.model = model
        return {"mode": "torch.inference_mode", "torch_threads": torch.get_num_threads()}

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> Callable[[], Any]:
        return lambda: self.model(*inputs)

    def to_numpy(self, output: Any) -> np.ndarray:
        return output.detach().float().numpy()


class Inductor(Eager):
    name = "inductor"

    def __init__(self, dynamic: bool = False) -> None:
        self.dynamic = dynamic

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]:
        self.model = torch.compile(model, dynamic=self.dynamic)
        return {"mode": f"torch.compile(dynamic={self.dynamic}), default mode, backend inductor",
                "torch_threads": torch.get_num_threads(),
                "compile_note": "compiles on the first call of each batch size (first_call_s per batch)"}


class InductorMax(Eager):
    """torch.compile(dynamic=False) with inductor's max_autotune and freezing; a fallback past a time budget."""

    name = "inductor-max"
    OPTIONS = {"max_autotune": True, "freezing": True}
    FALLBACK_OPTIONS = {"freezing": True}
    BUDGET_S = 120.0
    compiles_in_prepare = True  # the worker's first_call_s then spans prepare: this batch's compile

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]:
        import torch._inductor.config as inductor_config

        self.source = model
        self.best = torch.compile(model, dynamic=False, options=dict(self.OPTIONS))
        self.fallback: Any = None
        self.reason = ""
        self.cell: dict[str, Any] = {}
        return {"mode": f"torch.compile(dynamic=False, options={self.OPTIONS}), backend inductor",
                "max_autotune": True, "freezing": True, "fallback_options": self.FALLBACK_OPTIONS,
                "budget_s": self.BUDGET_S, "torch_threads": torch.get_num_threads(),
                "fx_graph_cache": inductor_config.fx_graph_cache, "autotune_local_cache": inductor_config.autotune_local_cache,
                "compile_note": "compiles (and autotunes) on the first call of each batch size (first_call_s per batch)"}

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> Callable[[], Any]:
        """The first call compiles this batch size: under max_autotune until one compile overruns the budget."""
        compiled = self.fallback if self.fallback is not None else self.best
        configuration = "freezing" if compiled is self.fallback else "max_autotune+freezing"
        start = time.perf_counter()
        try:
            compiled(*inputs)
        except Exception as error:  # noqa: BLE001 - fall back, and say why, rather than lose the cell
            if compiled is self.fallback:
                raise
            self.reason = f"max_autotune failed: {type(error).__name__}: {str(error)[:160]}"
            compiled, configuration = self.use_fallback(), "freezing"
            compiled(*inputs)
        seconds = time.perf_counter() - start
        self.cell = {"configuration": configuration, "compile_s": round(seconds, 2)}
        if self.reason and configuration == "freezing":
            self.cell["fallback_reason"] = self.reason
        if compiled is self.best and seconds > self.BUDGET_S:
            self.reason = f"max_autotune compile of batch {inputs[0].shape[0]} took {seconds:.0f} s > {self.BUDGET_S:.0f} s"
            self.use_fallback()
        return lambda: compiled(*inputs)

    def use_fallback(self) -> Any:
        if self.fallback is None:
            self.fallback = torch.compile(self.source, dynamic=False, options=dict(self.FALLBACK_OPTIONS))
        return self.fallback

    def cell_facts(self) -> dict[str, Any]:
        return dict(self.cell)


class OnnxRuntime:
    """ONNX Runtime on a `torch.onnx.export` of the model (`gather_sum`: EmbeddingBags rewritten first)."""

    allow_spinning = False  # recc bench --spin on: True (policies.py)

    def __init__(self, gather_sum: bool = False) -> None:
        self.gather_sum = gather_sum
        self.name = "ort-best" if gather_sum else "ort"

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]:
        import onnx
        import onnxruntime as ort

        facts: dict[str, Any] = {}
        if self.gather_sum:
            model, facts["embedding_bags_rewritten"] = with_gather_sum_lookups(model)
        self._tmp = tempfile.TemporaryDirectory(prefix="recc-bench-onnx-")
        path = Path(self._tmp.name) / "model.onnx"
        start = time.perf_counter()
        facts["exporter"] = self.export(model, path)
        facts["export_s"] = round(time.perf_counter() - start, 2)
        ops = onnx_op_histogram(onnx.load(str(path)))
        facts["loop_ops"] = ops.get("Loop", 0)
        facts["embedding_bag_became_loop"] = ops.get("Loop", 0) > 0
        facts["onnx_ops"] = dict(ops.most_common())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # by default idle threads must not spin: the systems' processes take turns on the same cores, and a
        # spinning pool in an idle process steals them from the one being timed (worker.thread_environment);
        # `recc bench --spin on|both` measures ORT's own default (spinning) as well (policies.py)
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(self.allow_spinning)))
        start = time.perf_counter()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        facts["session_s"] = round(time.perf_counter() - start, 2)
        facts["intra_op_num_threads"] = threads
        facts["allow_spinning"] = self.allow_spinning
        facts["onnxruntime"] = ort.__version__
        self.input_names = [i.name for i in self.session.get_inputs()]
        return facts

    def export(self, model: nn.Module, path: Path) -> str:
        return export_onnx(model, path)

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> Callable[[], Any]:
        feed = {name: x.numpy() for name, x in zip(self.input_names, inputs, strict=True)}
        return lambda: self.session.run(None, feed)[0]

    def to_numpy(self, output: Any) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)


class Recc:
    name = "recc"
    target = "cpu"  # recc.compile's target (recc bench --recc-target)

    def setup(self, model: nn.Module, threads: int) -> dict[str, Any]:
        import recc

        start = time.perf_counter()
        self.compiled = recc.compile(model, model.example_inputs(COMPILE_EXAMPLE_BATCH, seed=0),
                                     name=getattr(model, "name", None), threads=threads, target=self.target)
        compile_s = time.perf_counter() - start
        timings = self.compiled.report.get("timings_s", {}) if isinstance(self.compiled.report, dict) else {}
        memory = self.compiled.memory()  # the artifact's bytes on disk, THP of its table buffers (peak RSS: worker)
        return {"compile_s": round(compile_s, 2), "compile_timings_s": timings, "threads": threads, "target": self.target,
                "final_ops": self.compiled.report.get("final_ops") if isinstance(self.compiled.report, dict) else None,
                "artifact_bytes": memory["artifact_bytes"], "compile_peak_rss_bytes": memory["peak_rss_bytes"],
                "table_buffers": {k: memory[k] for k in ("table_buffer_bytes", "huge_page_bytes", "thp_setting")}}

    def prepare(self, inputs: tuple[torch.Tensor, ...]) -> Callable[[], Any]:
        return lambda: self.compiled(*inputs)

    def to_numpy(self, output: Any) -> np.ndarray:
        return torch.as_tensor(output).detach().float().numpy()


def make_system(name: str, inductor_dynamic: bool = False, recc_target: str = "cpu", spin: str = "off") -> System:
    """The system `name`; `spin` ("off"/"on", bench/policies.py) sets ONNX Runtime's allow_spinning, the one
    pool policy that is a session option (the others are environment variables, set before the process starts)."""
    system = _make_system(name, inductor_dynamic, recc_target)
    if isinstance(system, OnnxRuntime):
        system.allow_spinning = spin == "on"
    return system


def _make_system(name: str, inductor_dynamic: bool, recc_target: str) -> System:
    if name == "eager":
        return Eager()
    if name == "inductor":
        return Inductor(dynamic=inductor_dynamic)
    if name == "inductor-max":
        return InductorMax()
    if name in ("ort", "ort-best"):
        return OnnxRuntime(gather_sum=name == "ort-best")
    if name == "recc":
        system = Recc()
        system.target = recc_target
        return system
    if name in ("fbgemm-tbe", "fbgemm-tbe-int8"):
        from recc.bench.tbe import FbgemmTbe

        return FbgemmTbe(int8=name == "fbgemm-tbe-int8")
    if name in SYSTEMS:
        from recc.bench.reduced import make_reduced

        reduced = make_reduced(name)
        if isinstance(reduced, Recc):
            reduced.target = recc_target
        return reduced
    raise ValueError(f"unknown system {name!r}; valid: {', '.join(SYSTEMS)}")


class GatherSum(nn.Module):
    """An nn.EmbeddingBag over 2-D ids written as a row gather and a reduction (exports as Gather+Reduce)."""

    def __init__(self, bag: nn.EmbeddingBag) -> None:
        super().__init__()
        if bag.mode not in ("sum", "mean", "max") or bag.padding_idx is not None:
            raise ValueError(f"cannot rewrite EmbeddingBag(mode={bag.mode}, padding_idx={bag.padding_idx})")
        self.weight = bag.weight
        self.mode = bag.mode

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor | None = None,
                per_sample_weights: torch.Tensor | None = None) -> torch.Tensor:
        if offsets is not None or per_sample_weights is not None or ids.dim() != 2:
            raise ValueError("GatherSum handles 2-D ids without offsets or per-sample weights only")
        rows = nn.functional.embedding(ids, self.weight)
        if self.mode == "sum":
            return rows.sum(1)
        if self.mode == "mean":
            return rows.mean(1)
        return rows.amax(1)


def with_gather_sum_lookups(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of `model` with every nn.EmbeddingBag replaced by GatherSum; and how many were replaced."""
    rewritten = copy.deepcopy(model)
    targets = [name for name, module in rewritten.named_modules() if isinstance(module, nn.EmbeddingBag)]
    for qualified in targets:
        parent_name, _, child = qualified.rpartition(".")
        parent = rewritten.get_submodule(parent_name) if parent_name else rewritten
        setattr(parent, child, GatherSum(getattr(parent, child)))
    return rewritten, len(targets)


def export_onnx(model: nn.Module, path: Path) -> str:
    """Export with a dynamic batch: the dynamo exporter, else the legacy one; returns which was used."""
    inputs = model.example_inputs(COMPILE_EXAMPLE_BATCH, seed=0)
    names = list(getattr(model, "input_names", ())) or [f"input_{i}" for i in range(len(inputs))]
    try:
        torch.onnx.export(model, inputs, str(path), dynamo=True, input_names=names, output_names=["output"],
                          dynamic_shapes=model.batch_dynamic_shapes(), optimize=True, verbose=False)
        return "dynamo (torch.onnx.export dynamo=True)"
    except Exception as error:  # noqa: BLE001 - any exporter failure falls back to the legacy exporter
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
    torch.onnx.export(model, inputs, str(path), dynamo=False, input_names=names, output_names=["output"],
                      dynamic_axes={name: {0: "batch"} for name in [*names, "output"]})
    return f"legacy (dynamo=False; dynamo exporter failed: {reason})"


def onnx_op_histogram(model: Any) -> Counter[str]:
    """Op types in an ONNX model, subgraphs (Loop/If bodies) and local functions included."""
    counts: Counter[str] = Counter()

    def visit(graph: Any) -> None:
        for node in graph.node:
            counts[node.op_type] += 1
            for attribute in node.attribute:
                if attribute.g is not None and attribute.HasField("g"):
                    visit(attribute.g)
                for subgraph in attribute.graphs:
                    visit(subgraph)

    visit(model.graph)
    for function in model.functions:
        for node in function.node:
            counts[node.op_type] += 1
    return counts
