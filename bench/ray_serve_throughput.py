"""`recc serve-ray` (Ray Serve, N replicas of 1 CPU and 1 TVM thread each) against `recc serve` (one process,
TVM on every core) on the same artifact, under the same open-loop Poisson load (`recc.runtime.loadgen.run_load`,
the load generator of `recc loadgen`): per server and offered rate, achieved throughput and latency
percentiles from each query's scheduled arrival. Each server runs in processes of its own, started with the
CLI and stopped with SIGINT; `recc serve` runs without admission control (`--sla-ms 0`: Ray Serve has
none), so both answer every query. The load generator runs in this process, on the same cores.

    PYTHONPATH=. python bench/ray_serve_throughput.py [--artifact A] [--qps 20,60] [--duration 10] \\
        [--sizes deeprecsys] [--replicas 2]

The artifact is dlrm-rmc1 at `--scale` (default 0.01), compiled here unless `--artifact` names one.
Results: bench/results/serving/ray-vs-serve.json (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import recc  # noqa: E402
from recc.bench.machine import describe_machine  # noqa: E402
from recc.runtime.loadgen import LoadConfig, run_load  # noqa: E402

MODEL = "rmc1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(command: list[str], port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=log.parent)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{shlex.join(command)} exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/models/{MODEL}/ready", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    process.kill()
    raise RuntimeError(f"{shlex.join(command)} was not ready after 300 s")


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _server_commands(artifact: Path, port: int, replicas: int) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "recc.cli"]
    return {"recc serve": [*cli, "serve", f"{MODEL}={artifact}", "--port", str(port), "--sla-ms", "0",
                           "--log-level", "warning"],
            f"recc serve-ray ({replicas} replicas)": [*cli, "serve-ray", f"{MODEL}={artifact}", "--port", str(port),
                                                       "--replicas", str(replicas)]}


def _measure(artifact: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for server, command in _server_commands(artifact, _free_port(), args.replicas).items():
        port = int(command[command.index("--port") + 1])
        process = _serve(command, port, tmp / f"{server.split()[1]}.log")
        try:
            runs = []
            for qps in args.qps:
                config = LoadConfig(f"http://127.0.0.1:{port}", MODEL, qps=qps, duration_s=args.duration,
                                    sizes=args.sizes, seed=args.seed, timeout_s=60.0)
                load = run_load(config, command=[sys.executable, *sys.argv])
                runs.append({k: load[k] for k in ("config", "sent", "completed", "errors", "error_examples",
                                                  "offered_qps", "achieved_qps", "items_per_s", "latency_ms")})
            results[server] = {"command": shlex.join(command), "runs": runs}
        finally:
            _stop(process)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", help="an artifact to serve (default: dlrm-rmc1 at --scale, compiled here)")
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--qps", type=lambda t: [float(q) for q in t.split(",")], default=[20.0, 60.0],
                        help="offered rates, comma-separated (default 20,60)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals per rate")
    parser.add_argument("--sizes", default="deeprecsys", help="items per query, as recc loadgen --sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "serving" / "ray-vs-serve.json"))
    parser.add_argument("--note", default="", help="free text kept in the results (what else ran, ...)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(args.artifact) if args.artifact else _compile(args.scale, Path(tmp))
        load_before = os.getloadavg()[0]
        results = _measure(artifact, args, Path(tmp))
        load_after = os.getloadavg()[0]
    machine = describe_machine()
    report = {"command": shlex.join([sys.executable, *sys.argv]), "git_commit": machine["git_commit"],
              "git_dirty": bool(subprocess.run(["git", "status", "--porcelain", "--", "recc", "bench/ray_serve_throughput.py"], cwd=ROOT,
                                               capture_output=True, text=True).stdout.strip()),
              "cpu": machine["cpu_model"], "logical_cores": machine["logical_cores"],
              "artifact": args.artifact or f"dlrm-rmc1 at scale {args.scale}, compiled here",
              "load_avg_1m_before_after": [load_before, load_after], "note": args.note,
              "client": "recc.runtime.loadgen.run_load in the bench's process, on the same cores", "servers": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({s: [(r["offered_qps"], r["achieved_qps"], (r["latency_ms"] or {}).get("p95"))
                          for r in v["runs"]] for s, v in results.items()}, indent=1))


def _compile(scale: float, tmp: Path) -> Path:
    from recc.models import create

    model = create("dlrm-rmc1", scale=scale, seed=0)
    return recc.compile(model, model.example_inputs(4, seed=0), tuning_db=None).save(tmp / "rmc1.recc")


if __name__ == "__main__":
    main()
