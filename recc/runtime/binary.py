"""The KServe v2 binary tensor data extension (as Triton and KServe define it), both sides of the wire.

A request may carry tensors as raw bytes after its JSON: the HTTP header `Inference-Header-Content-Length`
gives the JSON's length in bytes, each binary input says `"parameters": {"binary_data_size": N}` instead of
`data`, and their bytes follow the JSON in the order the inputs are listed: little-endian, row-major, no
padding, each element in its datatype's native size (BOOL one byte 0/1, BF16 two bytes). Outputs come back
binary when the request asks, for all of them with `"parameters": {"binary_data_output": true}` or one by
one with `"outputs": [{"name": ..., "parameters": {"binary_data": true}}]`; the response then has the same
header and layout (`binary_data_size` per binary output). Without the header the body is all JSON.

Server side: `decode_request` (a body, JSON or binary, to validated tensors), `split_body`, `binary_tensors`
(each binary input, its size checked), `encode_response`. Client side (load generator, bench, tests): `encode_request`, `decode_response`.
Malformed binary requests raise `RequestError` (HTTP 400). No HTTP here.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch

from recc.runtime.protocol import DATATYPES, BatchLayout, RequestError, decode_inputs, dumps, parse_body, tensor_header

HEADER = "inference-header-content-length"
_WIRE = {"BOOL": "|b1", "UINT8": "|u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "|i1",
         "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
         "BF16": "<u2"}


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON, binary part) of a request body; all JSON when the header is absent."""
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit():
        raise RequestError(f"Inference-Header-Content-Length must be a byte count, got {header_length!r}")
    n = int(header_length)
    if n > len(body):
        raise RequestError(f"Inference-Header-Content-Length {n} is past the end of the body ({len(body)} bytes)")
    return body[:n], body[n:]


def binary_tensors(request: dict[str, Any], binary: bytes) -> dict[str, torch.Tensor]:
    """Each binary input, by name, decoded from its bytes cut from `binary` in request order (their sizes
    must add up to it exactly)."""
    view, offset, tensors = memoryview(binary), 0, {}
    for tensor in request["inputs"]:
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(params, dict) or "binary_data_size" not in params or not isinstance(tensor.get("name"), str):
            continue  # JSON data (or a malformed input, which decode_inputs explains)
        name, datatype, shape = tensor_header(tensor)
        size = params["binary_data_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RequestError(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
        if "data" in tensor:
            raise RequestError(f"input {name!r}: both \"data\" and binary_data_size")
        if offset + size > len(binary):
            raise RequestError(f"input {name!r}: binary_data_size {size} runs past the binary data "
                               f"({len(binary) - offset} bytes left after the JSON)")
        tensors[name] = decode_binary(name, datatype, shape, view[offset:offset + size])
        offset += size
    if offset != len(binary):
        raise RequestError(f"{len(binary) - offset} bytes after the JSON and the binary inputs it declares "
                           f"({offset} bytes); check Inference-Header-Content-Length and binary_data_size")
    return tensors


def decode_binary(name: str, datatype: str, shape: list[int], data: memoryview) -> torch.Tensor:
    """A binary input as a 64-byte aligned torch tensor of its declared datatype and shape (one copy)."""
    wire = np.dtype(_WIRE[datatype])
    if len(data) != math.prod(shape) * wire.itemsize:
        raise RequestError(f"input {name!r}: shape {shape} of {datatype} is {math.prod(shape) * wire.itemsize} "
                           f"bytes, binary_data_size is {len(data)}")
    values = np.frombuffer(data, dtype=wire).reshape(shape)
    if datatype == "BOOL" and values.size and values.view(np.uint8).max() > 1:
        raise RequestError(f"input {name!r}: BOOL bytes must be 0 or 1")
    native = wire.newbyteorder("=")
    out = torch.from_numpy(np.empty(0, native)).new_empty(shape)  # torch's allocator aligns to 64 bytes
    out.numpy()[...] = values
    return out.view(torch.bfloat16) if datatype == "BF16" else out


def _binary_outputs(request: dict[str, Any], names: list[str]) -> tuple[list[str], set[str]]:
    """(the outputs to return, in model order; those to return as binary) as the request asks."""
    params = request.get("parameters") or {}
    every = isinstance(params, dict) and params.get("binary_data_output") is True
    asked = request.get("outputs")
    if asked is None:
        return names, set(names) if every else set()
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise RequestError('"outputs" must be a list of objects with a string "name"')
    unknown = [o["name"] for o in asked if o["name"] not in names]
    if unknown:
        raise RequestError(f"unknown outputs {', '.join(map(repr, unknown))}; the model's are {', '.join(names)}")
    wanted = {o["name"] for o in asked}
    binary = {o["name"] for o in asked if every or (o.get("parameters") or {}).get("binary_data") is True}
    return [n for n in names if n in wanted], binary


def decode_request(model: Any, layout: BatchLayout | None, body: bytes,
                   json_length: str | None) -> tuple[dict[str, Any], list[torch.Tensor], int]:
    """An infer request's body as (the parsed JSON, its validated tensors, its rows: 1 for a model
    without a batch layout). `json_length`: the Inference-Header-Content-Length header (binary tensors
    follow the JSON). A bad request raises ValueError: `RequestError`, or the model's own checks with the
    Python API's message."""
    head, binary = split_body(body, json_length)
    parsed = parse_body(head)
    given = binary_tensors(parsed, binary) if json_length is not None else None
    check_outputs_request(parsed, model)
    tensors, dims = model.validate(*decode_inputs(parsed, model, given))
    return parsed, tensors, dims.get(layout.symbol, 1) if layout else 1


def check_outputs_request(request: dict[str, Any], model: Any) -> None:
    """Refuse (400) an `outputs` list that names no output of the model, before the call."""
    _binary_outputs(request, [s.name for s in model.manifest.outputs])


def encode_response(name: str, model: Any, outputs: list[np.ndarray],
                    request: dict[str, Any]) -> tuple[bytes, int | None]:
    """The infer response as bytes, and the length of its JSON part when binary outputs follow it (sent as
    Inference-Header-Content-Length), else None."""
    specs = model.manifest.outputs
    chosen, binary = _binary_outputs(request, [s.name for s in specs])
    tensors, blobs = [], []
    for spec, out in zip(specs, outputs):
        if spec.name not in chosen:
            continue
        tensor: dict[str, Any] = {"name": spec.name, "datatype": DATATYPES[spec.dtype], "shape": list(out.shape)}
        if spec.name in binary:
            blob = wire_bytes(out, DATATYPES[spec.dtype])
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = out.reshape(-1)
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": name, "outputs": tensors}
    if "id" in request:
        response["id"] = request["id"]
    head = dumps(response)
    return (head + b"".join(blobs), len(head)) if blobs else (head, None)


def wire_bytes(array: np.ndarray, datatype: str) -> bytes:
    """An array's bytes on the wire as `datatype`: little-endian, row-major (BF16 rounded from float32)."""
    if datatype == "BF16":  # outputs in bfloat16 reach here as float32 (protocol.output_arrays)
        return torch.from_numpy(np.ascontiguousarray(array, np.float32)).to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    return np.ascontiguousarray(array, _WIRE[datatype]).tobytes()


# -- client side ------------------------------------------------------------------------------------------
def encode_request(inputs: list[tuple[str, str, np.ndarray]], binary_outputs: bool = True,
                   parameters: dict[str, Any] | None = None) -> tuple[bytes, dict[str, str]]:
    """A binary infer request: (body, headers) for `(name, datatype, array)` inputs."""
    tensors, blobs = [], []
    for name, datatype, array in inputs:
        blob = wire_bytes(array, datatype)
        tensors.append({"name": name, "datatype": datatype, "shape": list(array.shape),
                        "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    params = {**(parameters or {}), **({"binary_data_output": True} if binary_outputs else {})}
    head = json.dumps({"inputs": tensors, **({"parameters": params} if params else {})}).encode()
    return head + b"".join(blobs), {"content-type": "application/octet-stream", HEADER: str(len(head))}


def decode_response(body: bytes, headers: Any) -> list[np.ndarray]:
    """The outputs of an infer response, JSON or binary, as numpy arrays (BF16 as float32)."""
    length = headers.get(HEADER) if headers is not None else None
    head, binary = (body, b"") if length is None else (body[:int(length)], body[int(length):])
    arrays, offset = [], 0
    for tensor in json.loads(head)["outputs"]:
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        datatype, shape = tensor["datatype"], tensor["shape"]
        if size is None:
            dtype = np.float32 if datatype == "BF16" else np.dtype(_WIRE[datatype]).newbyteorder("=")
            arrays.append(np.asarray(tensor["data"], dtype).reshape(shape))
            continue
        values = np.frombuffer(binary[offset:offset + size], dtype=_WIRE[datatype]).reshape(shape)
        offset += size
        if datatype == "BF16":
            bits = np.ascontiguousarray(values, "=u2").view(np.int16)
            values = torch.from_numpy(bits).view(torch.bfloat16).to(torch.float32).numpy()
        arrays.append(values)
    return arrays
