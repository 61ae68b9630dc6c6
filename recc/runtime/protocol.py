"""The KServe v2 Open Inference Protocol's JSON tensors, for a recc artifact: model metadata, request
decoding, response encoding. No HTTP here (the server is `recc.runtime.server`).

The binary tensor extension is `recc.runtime.binary`. A request's tensors are decoded as the request
declares them (its datatype and shape), then checked by
`CompiledModel.validate`, so a wrong dtype, a wrong shape or an id out of range gets exactly the message
the Python API gives. What only the wire can get wrong (malformed JSON, missing or extra inputs, a
datatype the protocol does not know, data that does not fill the declared shape, values that do not fit
the declared datatype) is a `RequestError` here. Both are answered 400.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recc.compiler.artifact import dim_to_json

try:  # several times faster than json for arrays of numbers; the serve extra installs it
    import orjson
except ModuleNotFoundError:  # pragma: no cover - without it, the standard library's json
    orjson = None
from recc.compiler.ir.types import Sym

# recc dtype -> KServe v2 datatype (BF16 as Triton spells it)
DATATYPES = {"bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
             "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "float16": "FP16",
             "float32": "FP32", "float64": "FP64", "bfloat16": "BF16"}
_NUMPY = {k: np.dtype(v) for v, k in DATATYPES.items() if v != "bfloat16"}


class RequestError(ValueError):
    """A request the protocol cannot decode; its message is the 400 response's `error`."""


@dataclass(frozen=True)
class BatchLayout:
    """Where the batch is: `symbol` is a dim of its own (coefficient 1) in every input and every output,
    and no other dim is symbolic, so requests can be concatenated along these axes and split back."""

    symbol: str
    input_axes: tuple[int, ...]
    output_axes: tuple[int, ...]


def batch_layout(model: Any) -> BatchLayout | None:
    """The model's batch layout, or None when requests cannot be concatenated (no symbolic batch, an input
    without it, another symbolic dim, a multiple like `26*batch`)."""
    specs = list(model.manifest.inputs) + list(model.manifest.outputs)
    symbols = {d for s in specs for d in s.shape if isinstance(d, Sym)}
    if len(symbols) != 1:
        return None
    only = symbols.pop()
    if only.coef != 1 or len(only.names) != 1 or any(list(s.shape).count(only) != 1 for s in specs):
        return None
    axes = [list(s.shape).index(only) for s in specs]
    n = len(model.manifest.inputs)
    return BatchLayout(only.names[0], tuple(axes[:n]), tuple(axes[n:]))


def named_artifacts(specs: list[str]) -> dict[str, str]:
    """Artifact paths by the name they are served as: `PATH` as its directory name without `.recc`,
    `NAME=PATH` as NAME."""
    named: dict[str, str] = {}
    for spec in specs:
        name, _, path = spec.partition("=") if "=" in spec else (Path(spec).name.removesuffix(".recc"), "", spec)
        if name in named:
            raise ValueError(f"two artifacts would both be served as {name!r}; name them: NAME=PATH")
        named[name] = path
    return named


def server_metadata(models: list[str]) -> dict[str, Any]:
    """GET /v2: the server's name, version, protocol extensions and the models it serves."""
    return {"name": "recc", "version": "0.1.0", "extensions": ["binary_tensor_data"], "models": models}


def _shape(spec: Any) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in spec.shape]


def model_metadata(name: str, model: Any) -> dict[str, Any]:
    """GET /v2/models/{name}: KServe's fields, plus `parameters` a client needs to build valid inputs:
    each input's symbolic dims (recc's artifact form) and its embedding-id limits
    ([axis, start, end, rows(, wrap)], as the manifest's `id_checks`)."""
    m = model.manifest
    layout = batch_layout(model)
    limits = m.id_checks.ids
    inputs = [{"name": s.name, "datatype": DATATYPES[s.dtype], "shape": _shape(s),
               "parameters": {"dims": [dim_to_json(d) for d in s.shape],
                              "id_limits": [lim.to_json() for lim in limits.get(s.name, ())]}}
              for s in m.inputs]
    outputs = [{"name": s.name, "datatype": DATATYPES[s.dtype], "shape": _shape(s)} for s in m.outputs]
    return {"name": name, "versions": [], "platform": "recc", "inputs": inputs, "outputs": outputs,
            "parameters": {"model": m.model, "batch_symbol": layout.symbol if layout else None,
                           "offsets_checked": [c.offsets for c in m.id_checks.offsets]}}


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        request = orjson.loads(body) if orjson is not None else json.loads(body)
    except ValueError:  # orjson refuses NaN/Infinity literals, which json (and phase 1) accept
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RequestError(f"malformed JSON: {e}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise RequestError('the request must be a JSON object with a list "inputs"')
    return request


def decode_inputs(request: dict[str, Any], model: Any,
                  binary: dict[str, torch.Tensor] | None = None) -> list[np.ndarray | torch.Tensor]:
    """The request's tensors in the model's input order, as the request declares them (dtype, shape);
    `binary`: those the request sent as binary data, already decoded (`binary.binary_tensors`)."""
    given: dict[str, Any] = {}
    for i, tensor in enumerate(request["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise RequestError(f"inputs[{i}] must be an object with a string \"name\"")
        if tensor["name"] in given:
            raise RequestError(f"input {tensor['name']!r} is given twice")
        given[tensor["name"]] = tensor
    expected = model.input_names
    missing = [n for n in expected if n not in given]
    extra = [n for n in given if n not in expected]
    if missing or extra:
        problem = "; ".join(p for p in (f"missing {', '.join(map(repr, missing))}" if missing else "",
                                        f"unknown {', '.join(map(repr, extra))}" if extra else "") if p)
        raise RequestError(f"expected inputs {', '.join(expected)}: {problem}")
    binary = binary or {}
    return [binary[n] if n in binary else decode_tensor(given[n]) for n in expected]


def tensor_header(tensor: dict[str, Any]) -> tuple[str, str, list[int]]:
    """(name, datatype, shape) of a request tensor, checked."""
    name, datatype, shape = tensor["name"], tensor.get("datatype"), tensor.get("shape")
    if datatype not in DATATYPES.values():
        raise RequestError(f"input {name!r}: unknown datatype {datatype!r} (one of {', '.join(DATATYPES.values())})")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise RequestError(f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    return name, datatype, shape


def decode_tensor(tensor: dict[str, Any]) -> np.ndarray | torch.Tensor:
    name, datatype, shape = tensor_header(tensor)
    if "data" not in tensor:
        if isinstance(tensor.get("parameters"), dict) and "binary_data_size" in tensor["parameters"]:
            raise RequestError(f"input {name!r}: binary_data_size without an Inference-Header-Content-Length header")
        raise RequestError(f"input {name!r}: no \"data\" (nor parameters.binary_data_size, for binary data)")
    try:
        values = np.asarray(tensor["data"])
    except ValueError:
        raise RequestError(f"input {name!r}: data is not a regular (rectangular) array") from None
    if values.size != math.prod(shape):
        raise RequestError(f"input {name!r}: shape {shape} holds {math.prod(shape)} values, data has {values.size}")
    return as_aligned_tensor(_typed(name, datatype, values).reshape(shape))


def as_aligned_tensor(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A torch tensor on the array's memory when that is 64-byte aligned and compact (what TVM's kernels
    take as is, so the call takes its fast path), else on an aligned copy (torch's allocator aligns)."""
    if isinstance(array, torch.Tensor):
        return array
    tensor = torch.from_numpy(array)
    if array.ctypes.data % 64 or not array.flags.c_contiguous:
        return tensor.clone(memory_format=torch.contiguous_format)
    return tensor


def _typed(name: str, datatype: str, values: np.ndarray) -> np.ndarray | torch.Tensor:
    """`values` in `datatype`, refusing what would change a value: strings, fractions or out-of-range
    numbers for an integer type, numbers for BOOL."""
    if datatype == "BF16":
        return torch.from_numpy(_typed(name, "FP32", values)).to(torch.bfloat16)
    dtype = _NUMPY[datatype]
    kind = values.dtype.kind
    if values.dtype == dtype:  # the common case (int64 ids, float data as float64 for FP64): no copy
        return values
    if values.size == 0:
        return values.astype(dtype)
    if kind not in "biuf" or (dtype.kind == "b") != (kind == "b") or (dtype.kind in "iu" and kind == "f"):
        found = {"b": "booleans", "i": "integers", "u": "integers", "f": "non-integer numbers"}.get(kind, "non-numbers")
        raise RequestError(f"input {name!r}: {datatype} data must be "
                           f"{'booleans' if dtype.kind == 'b' else 'integers' if dtype.kind in 'iu' else 'numbers'}, "
                           f"got {found}")
    with np.errstate(over="ignore", invalid="ignore"):
        typed = values.astype(dtype)
    if dtype.kind in "iu" and not np.array_equal(typed, values):
        raise RequestError(f"input {name!r}: a value does not fit {datatype}")
    return typed


def dumps(content: Any) -> bytes:
    """JSON bytes; numpy arrays as lists. NaN and infinities are written as JavaScript's literals (Python's
    json and most clients read them; orjson would write null), so content holding them takes json."""
    if orjson is not None:
        try:
            return orjson.dumps(content, default=_finite_list)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(content, separators=(",", ":"), default=_listed).encode()


def _finite_list(value: Any) -> Any:
    if isinstance(value, np.ndarray) and (value.dtype.kind in "biu" or np.isfinite(value).all()):
        return value.tolist()
    raise TypeError("not for orjson")


def _listed(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def output_arrays(result: Any) -> list[np.ndarray]:
    """A model call's result (a tensor or a tuple of them) as numpy arrays the caller owns."""
    results = result if isinstance(result, tuple) else (result,)
    return [r.to(torch.float32).numpy() if r.dtype == torch.bfloat16 else r.numpy() for r in results]
