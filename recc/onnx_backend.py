"""recc as an ONNX backend (`onnx.backend.base.Backend`): `prepare(model)` imports a ModelProto with recc's
ONNX frontend and builds it with TVM (recc.api.compile_graph); `rep.run(inputs)` returns numpy arrays in
the model's output order.

    rep = RecBackend.prepare(model)          # or recc.onnx_backend.prepare(model)
    outputs = rep.run([x, y])

recc compiles for shapes and constants known at build time. Two things a static compiler cannot take
from the ModelProto alone are taken from the first `run`'s inputs instead, and the build is redone if a
later call differs:
- a graph input a converter needs as a constant (a Reshape's shape, a Slice's starts, ReduceSum's axes
  given as inputs, as ONNX's node tests do): the graph is specialized on its value
  (frontends.onnx.import_specialized);
- an input dim without a size: it is fixed to the size given.
Anything recc does not convert raises the frontend's UnsupportedOpError naming the node and its op.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from recc.api import compile_graph
from recc.frontends.onnx import OnnxImportError, UnsupportedOpError
from recc.frontends.onnx.context import InputNeededAtImport
from recc.frontends.onnx.importer import import_specialized
from recc.frontends.onnx.load import read_model


def _needs_inputs(error: BaseException) -> bool:
    """True when an import failed only because a graph input was needed as a constant."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, InputNeededAtImport):
            return True
        cause = cause.__cause__
    return False


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def _has_unsized_dims(model: onnx.ModelProto) -> bool:
    return any(not d.HasField("dim_value") for v in _graph_inputs(model) for d in v.type.tensor_type.shape.dim)


def _with_input_shapes(model: onnx.ModelProto, inputs: Sequence[np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` whose graph inputs have the sizes of `inputs`."""
    fixed = copy.deepcopy(model)
    for value_info, array in zip(_graph_inputs(fixed), inputs):
        dims = value_info.type.tensor_type.shape.dim
        if len(dims) != np.ndim(array):
            raise ValueError(f"input {value_info.name!r} has rank {len(dims)}, got an array of shape "
                             f"{np.shape(array)}")
        for d, size in zip(dims, np.shape(array)):
            d.Clear()
            d.dim_value = int(size)
    return fixed


def _tensor(array: np.ndarray) -> Any:
    """A numpy array as a torch tensor of its shape (0-d included) and dtype (ml_dtypes' bfloat16 too)."""
    import torch

    array = np.ascontiguousarray(array).reshape(array.shape)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


def _numpy(tensor: Any) -> np.ndarray:
    import torch

    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().copy().view(ml_dtypes.bfloat16)
    return np.array(tensor.numpy(), copy=True)


class RecBackendRep(BackendRep):
    """A model prepared by RecBackend: compiled now, or at the first run when it needs the inputs."""

    def __init__(self, model: onnx.ModelProto, name: str, **compile_options: Any) -> None:
        self.model = model
        self.name = name
        self.options = compile_options
        self.input_names = [v.name for v in _graph_inputs(model)]
        self.specialized: set[str] = set()  # the inputs the build was specialized on (by name)
        self._compiled: Any = None
        self._key: Any = None
        if not _has_unsized_dims(model):
            try:
                self._build(model, None)
            except OnnxImportError as e:
                if not _needs_inputs(e):
                    raise

    def _build(self, model: onnx.ModelProto, known: dict[str, np.ndarray] | None) -> None:
        graph, self.specialized = import_specialized(model, name=self.name, known_inputs=known)
        self._compiled = compile_graph(graph, self.name, **self.options)

    def _key_for(self, inputs: Sequence[np.ndarray]) -> Any:
        by_name = dict(zip(self.input_names, inputs))
        return (tuple(np.shape(x) for x in inputs),
                tuple((n, by_name[n].dtype.str, by_name[n].tobytes()) for n in sorted(self.specialized)))

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        arrays = [np.asarray(x) for x in (inputs.values() if isinstance(inputs, dict) else inputs)]
        if len(arrays) != len(self.input_names):
            raise ValueError(f"{self.name} takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                             f"got {len(arrays)}")
        if self._compiled is None or (self._key is not None and self._key != self._key_for(arrays)):
            model = _with_input_shapes(self.model, arrays) if _has_unsized_dims(self.model) else self.model
            self._build(model, dict(zip(self.input_names, arrays)))
            self._key = self._key_for(arrays)
        outputs = self._compiled(*[_tensor(x) for x in arrays])
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        return tuple(_numpy(o) for o in outputs)


class RecBackend(Backend):
    """onnx.backend.base.Backend over recc: CPU only (TVM's llvm target for this machine)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> RecBackendRep:
        super().prepare(model, device, **kwargs)
        if not cls.supports_device(device):
            raise ValueError(f"recc's ONNX backend runs on CPU, not {device!r}")
        proto = read_model(model)
        name = "".join(c if c.isalnum() else "_" for c in (proto.graph.name or "onnx_model"))
        return RecBackendRep(proto, name, **kwargs)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any
                  ) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU", outputs_info: Any = None,
                 **kwargs: Any) -> tuple[np.ndarray, ...]:
        raise NotImplementedError("recc compiles whole models: wrap the node in a ModelProto and use prepare")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


prepare = RecBackend.prepare
run_model = RecBackend.run_model
supports_device = RecBackend.supports_device

__all__ = ["RecBackend", "RecBackendRep", "prepare", "run_model", "supports_device", "UnsupportedOpError"]
