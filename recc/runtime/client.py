"""A Python client for a KServe v2 server (`recc serve`, `recc serve-ray`, or any other): numpy arrays in,
numpy arrays out, over httpx with the binary tensor extension (no JSON number lists on either side).

    from recc.serving import Client

    with Client("http://127.0.0.1:8000") as client:
        client.models()                                  # ["rmc1"]
        (scores,) = client.infer("rmc1", dense=dense, sparse_ids=ids)   # or positional, in input order
        client.infer("rmc1", dense, ids, sla_ms=5)       # a deadline of its own (else the server's)

Errors: `ServerError` with the HTTP status and the server's message: 400 carries exactly the message the
Python API (`recc.load(...)(...)`) gives for the same inputs, 404 an unknown model, 429 a refusal by
admission control (`ServerError.refused` is True: retry later or with a longer deadline).
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from recc.runtime.binary import decode_response, encode_request
from recc.runtime.protocol import DATATYPES


class ServerError(RuntimeError):
    """The server answered an error: `status` (HTTP) and `message` (its `error`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message

    @property
    def refused(self) -> bool:
        return self.status == 429


class Client:
    """A keep-alive connection to one server; use as a context manager or call `close()`."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self._http = httpx.Client(base_url=url, timeout=timeout_s)
        self._inputs: dict[str, list[dict[str, Any]]] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def live(self) -> bool:
        return self._http.get("/v2/health/live").status_code == 200

    def models(self) -> list[str]:
        return list(self._get("/v2")["models"])

    def metadata(self, model: str) -> dict[str, Any]:
        return self._get(f"/v2/models/{model}")

    def infer(self, model: str, *arrays: Any, sla_ms: float | None = None, **named: Any) -> list[np.ndarray]:
        """The model's outputs for inputs given in order (`*arrays`) or by name (`**named`)."""
        specs = self._inputs.get(model) or self._inputs.setdefault(model, self.metadata(model)["inputs"])
        if arrays and named:
            raise ValueError("give the inputs either in order or by name, not both")
        if named:
            unknown = sorted(set(named) - {s["name"] for s in specs})
            if unknown:
                raise ValueError(f"model {model!r} has no input(s) {unknown}; its inputs: {[s['name'] for s in specs]}")
            arrays = tuple(named[s["name"]] for s in specs if s["name"] in named)
            specs = [s for s in specs if s["name"] in named]
        tensors = []
        for spec, array in zip(specs, arrays):
            array = np.asarray(array.numpy() if hasattr(array, "numpy") else array)
            datatype = DATATYPES.get(str(array.dtype))
            if datatype is None:
                raise ValueError(f"input {spec['name']!r}: dtype {array.dtype} has no KServe v2 datatype")
            tensors.append((spec["name"], datatype, array))
        body, headers = encode_request(tensors, parameters={"sla_ms": sla_ms} if sla_ms else None)
        response = self._http.post(f"/v2/models/{model}/infer", content=body, headers=headers)
        if response.status_code != 200:
            raise ServerError(response.status_code, _message(response))
        return decode_response(response.content, response.headers)

    def _get(self, path: str) -> dict[str, Any]:
        response = self._http.get(path)
        if response.status_code != 200:
            raise ServerError(response.status_code, _message(response))
        return response.json()


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text
