"""What an HTTP request of batch 1 costs over the in-process call: `recc serve` in a process of its own, this
process as the client over one keep-alive connection (httpx's sync client), N sequential batch-1 requests on
the same inputs as N in-process calls `compiled(*tensors)` (torch tensors, loaded here with the same TVM
threads). Blocks of HTTP requests and of in-process calls alternate, so both see the same machine noise.

    PYTHONPATH=. python bench/serving_overhead.py --label after [--binary] [--server-arg=--max-delay-ms=0]

Also measured, to say where the time goes: `GET /v2/health/live` over the same connection (FastAPI's
route, no model); the same infer request with the standard library's `http.client` (a thinner client than
httpx); and the same request body POSTed with httpx to the least ASGI app there is (read it, answer 13
bytes) under uvicorn in a process of its own: the floor that the HTTP stack and the client set. The artifact is dlrm-rmc1 at scale 0.001, compiled here into a temporary
directory unless `--artifact` names one. Results: bench/results/serving/overhead-LABEL.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import recc  # noqa: E402
from recc.bench.machine import describe_machine  # noqa: E402
from recc.runtime.synthetic import synthetic_inputs  # noqa: E402


def _artifact(args: argparse.Namespace, tmp: Path) -> Path:
    if args.artifact:
        return Path(args.artifact)
    from recc.models import create

    model = create("dlrm-rmc1", scale=0.001, seed=0)
    return recc.compile(model, model.example_inputs(4, seed=0), tuning_db=None).save(tmp / "rmc1.recc")


_FLOOR_APP = """
async def app(scope, receive, send):  # the least an ASGI app can do: read the request, answer 13 bytes
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"live":true}'})
"""


def _start_floor(log: Path) -> tuple[subprocess.Popen, int, list[str]]:
    (log.parent / "floor_app.py").write_text(_FLOOR_APP)
    command = [sys.executable, "-m", "uvicorn", "floor_app:app", "--port", "0", "--no-access-log"]
    return _start(command, dict(os.environ), log)


def _start_server(artifact: Path, args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, int, list[str]]:
    command = [sys.executable, "-m", "recc.cli", "serve", f"m={artifact}", "--port", "0", "--threads",
               str(args.threads), *args.server_arg]
    env = {**os.environ, "PYTHONPATH": f"{args.server_pythonpath or ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return _start(command, env, log)


def _start(command: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int, list[str]]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env, cwd=log.parent)
    deadline = time.time() + 120
    while time.time() < deadline:
        if match := re.search(r"http://127\.0\.0\.1:(\d+)", log.read_text()):
            return process, int(match.group(1)), command
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not start in 120 s")


def _body(metadata: dict[str, Any], arrays: dict[str, np.ndarray], binary: bool) -> tuple[bytes, dict[str, str]]:
    if binary:
        from recc.runtime.binary import encode_request

        return encode_request([(s["name"], s["datatype"], arrays[s["name"]]) for s in metadata["inputs"]],
                              binary_outputs=True)
    inputs = [{"name": s["name"], "datatype": s["datatype"], "shape": list(arrays[s["name"]].shape),
               "data": arrays[s["name"]].reshape(-1).tolist()} for s in metadata["inputs"]]
    return json.dumps({"inputs": inputs}).encode(), {"content-type": "application/json"}


def _output(response_body: bytes, headers: Any, binary: bool) -> np.ndarray:
    if binary:
        from recc.runtime.binary import decode_response

        return decode_response(response_body, headers)[0]
    out = json.loads(response_body)["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def _timed(fn: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _stats_us(times: list[float]) -> dict[str, float]:
    a = np.asarray(times) * 1e6
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "n": len(times)}


def _measure(port: int, floor_port: int, artifact: Path, args: argparse.Namespace) -> dict[str, Any]:
    model = recc.load(artifact, threads=args.threads)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    metadata = client.get("/v2/models/m").json()
    arrays = synthetic_inputs(metadata, 1, np.random.default_rng(0))
    tensors = [torch.from_numpy(arrays[n]) for n in model.input_names]
    body, headers = _body(metadata, arrays, args.binary)
    stdlib = http.client.HTTPConnection("127.0.0.1", port)
    floor = httpx.Client(base_url=f"http://127.0.0.1:{floor_port}", timeout=30)

    def via_httpx() -> np.ndarray:
        response = client.post("/v2/models/m/infer", content=body, headers=headers)
        assert response.status_code == 200, response.text
        return _output(response.content, response.headers, args.binary)

    def via_stdlib() -> np.ndarray:
        stdlib.request("POST", "/v2/models/m/infer", body=body, headers=headers)
        response = stdlib.getresponse()
        content = response.read()
        assert response.status == 200, content
        return _output(content, response.headers, args.binary)

    np.testing.assert_allclose(via_httpx(), model(*tensors).numpy(), atol=1e-5)  # the same answer
    cases = {"http": via_httpx, "in_process": lambda: model(*tensors), "health": lambda: client.get("/v2/health/live"),
             "http_stdlib_client": via_stdlib,
             "floor_asgi_app": lambda: floor.post("/", content=body, headers=headers)}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():
        _timed(fn, args.warmup)
    per_round = max(1, args.n // args.rounds)
    for _ in range(args.rounds):
        for name, fn in cases.items():
            times[name] += _timed(fn, per_round)
    client.close()
    stdlib.close()
    floor.close()
    return {name: _stats_us(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="names the results file: overhead-LABEL.json")
    parser.add_argument("--artifact", help="an artifact to serve (default: dlrm-rmc1 at scale 0.001, compiled here)")
    parser.add_argument("-n", type=int, default=2000, help="requests (and in-process calls) per case")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per case")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="TVM threads, server and in-process alike")
    parser.add_argument("--binary", action="store_true", help="binary tensor extension instead of JSON tensors")
    parser.add_argument("--server-arg", action="append", default=[], help="passed to recc serve (repeatable)")
    parser.add_argument("--server-pythonpath", help="run the server from this code instead (a baseline: an older "
                        "commit's `git archive`, with stub modules hiding uvloop/httptools)")
    parser.add_argument("--out-dir", default=str(ROOT / "bench" / "results" / "serving"))
    parser.add_argument("--note", default="", help="free text kept in the results (what else ran, ...)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = _artifact(args, Path(tmp))
        load_before = os.getloadavg()
        server, port, server_command = _start_server(artifact, args, Path(tmp) / "server.log")
        floor, floor_port, _ = _start_floor(Path(tmp) / "floor.log")
        try:
            results = _measure(port, floor_port, artifact, args)
        finally:
            for process in (server, floor):
                process.terminate()
                process.wait(30)
        load_after = os.getloadavg()
    machine = describe_machine()
    git_dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "recc", "bench/serving_overhead.py"],
                                    cwd=ROOT, capture_output=True, text=True).stdout.strip())
    overhead = {q: results["http"][q] - results["in_process"][q] for q in ("p50", "p99")}
    report = {
        "label": args.label, "command": shlex.join([sys.executable, *sys.argv]), "server_command": shlex.join(server_command),
        "server_pythonpath": args.server_pythonpath,
        "git_commit": machine["git_commit"], "git_dirty": git_dirty, "cpu": machine["cpu_model"],
        "cpu_flags": machine["cpu_flags"], "logical_cores": machine["logical_cores"], "threads": args.threads,
        "artifact": args.artifact or "dlrm-rmc1 at scale 0.001, compiled here (tables ~4 MB: fit in cache)", "load_avg_1m_before_after": [load_before[0], load_after[0]],
        "client": "httpx.Client, one keep-alive connection, sequential", "binary": args.binary, "note": args.note,
        "versions": {p: _pkg_version(p) for p in ("uvicorn", "uvloop", "httptools", "orjson", "fastapi", "starlette", "httpx")},
        "latency_us": results, "overhead_us": overhead,
        # what the recc server adds to the bare HTTP stack with the same client and body (model call included)
        "beyond_floor_us_p50": results["http"]["p50"] - results["floor_asgi_app"]["p50"], "target_us_p50": 300, "target_met": overhead["p50"] <= 300,
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"overhead-{args.label}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("label", "latency_us", "overhead_us", "beyond_floor_us_p50", "load_avg_1m_before_after")}, indent=1))


def _pkg_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
