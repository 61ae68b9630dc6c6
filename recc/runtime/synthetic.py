"""Random valid inputs for a served model, built from its protocol metadata (`protocol.model_metadata`):
float inputs U[0,1), embedding ids uniform within each table's rows (the limits the artifact checks), the
batch symbol set to the number of rows. What cannot be made valid from the metadata is refused, naming it:
an integer input with no id limits, offsets, a symbolic dim other than the batch."""

from __future__ import annotations

from typing import Any

import numpy as np

_INTS = {"INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8,
         "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64}
_FLOATS = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BF16": np.float32}


class SyntheticInputError(ValueError):
    """The metadata does not say enough to build valid inputs."""


def input_shape(spec: dict[str, Any], batch_symbol: str | None, rows: int) -> list[int]:
    shape = []
    for d in spec["parameters"]["dims"]:
        if isinstance(d, int):
            shape.append(d)
        elif d["symbols"] == [batch_symbol]:
            shape.append(d["coef"] * rows)
        else:
            raise SyntheticInputError(f"input {spec['name']!r}: symbolic dim {d} is not the batch; "
                                      "synthetic inputs cannot choose it")
    return shape


def synthetic_inputs(metadata: dict[str, Any], rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Seeded random inputs of `rows` rows that the model accepts."""
    params = metadata.get("parameters", {})
    if params.get("offsets_checked"):
        raise SyntheticInputError(f"model {metadata['name']!r} takes offsets ({', '.join(params['offsets_checked'])}); "
                                  "synthetic inputs for bags of ids are not supported yet")
    return {spec["name"]: _tensor(spec, input_shape(spec, params.get("batch_symbol"), rows), rng)
            for spec in metadata["inputs"]}


def _tensor(spec: dict[str, Any], shape: list[int], rng: np.random.Generator) -> np.ndarray:
    datatype = spec["datatype"]
    if datatype in _FLOATS:
        return rng.random(shape).astype(_FLOATS[datatype])
    if datatype == "BOOL":
        return rng.random(shape) < 0.5
    limits = spec["parameters"]["id_limits"]
    if not limits:
        raise SyntheticInputError(f"input {spec['name']!r} is {datatype} but the artifact checks no id range for it; "
                                  "synthetic inputs cannot know its valid values")
    bound = np.full(shape, np.inf)
    for axis, start, end, rows, *_ in limits:
        where = (slice(None),) * (axis or 0) + (slice(start, end),) if axis is not None else ...
        bound[where] = np.minimum(bound[where], rows)
    bound[np.isinf(bound)] = 1  # positions no table reads: 0
    return np.floor(rng.random(shape) * bound).astype(_INTS[datatype])
