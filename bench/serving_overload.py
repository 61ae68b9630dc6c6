"""Overload: `recc serve --sla-ms 10` under twice its latency-bounded load. The target (issue): under 2x the
latency-bounded load for 60 s, accepted requests' p99 stays under the SLA, the excess is refused fast,
nothing accepted is lost, and throughput recovers within 1 s after the burst.

    PYTHONPATH=. python bench/serving_overload.py [--artifact A] [--rate R] [--burst-s 60] [--sizes deeprecsys]

The server (`recc serve rmc1=ART --sla-ms 10`, its defaults otherwise) runs in a process of its own; the
load generator (`recc.runtime.loadgen.run_load`: open-loop Poisson, latency from each query's scheduled
arrival) runs in this process, on the same cores. The latency-bounded rate R is `--rate`, or searched
with short runs (a ladder of x1.5 steps, then bisection) for the highest rate that meets `--criterion`:
`server` (default): >= 95% of accepted requests answered within the SLA as the server measures them
(handler arrival to response) with <= 5% refused and no errors; `client`: accepted p95 <= SLA from
scheduled arrival with <= 1% refused. On a 2-core machine shared by client and server the client-side
p95 includes the client's own scheduling delays and met 10 ms at no rate (overload-client-criterion.json). Then one run of three phases, R for 10 s, 2R for `--burst-s`, R for 10 s,
every request recorded: per phase, accepted latency p50/p95/p99, refused count and refusal latency (from
scheduled arrival to the 429), errors and timeouts (anything but 200 or 429: must be 0); a timeline of
1-s windows; the recovery time: from the end of the burst until the 1-s windows (sliding by 0.1 s) of
accepted p99 stay under the SLA and refusals stay at the first phase's level (and at zero, separately);
the server's own counters (`/metrics`) against the client's. The artifact is dlrm-rmc1 at `--scale`
(default 0.01), compiled here unless `--artifact` names one. Results: bench/results/serving/overload.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ray_serve_throughput import MODEL, _compile, _free_port, _serve, _stop

from recc.bench.machine import describe_machine
from recc.runtime.loadgen import LoadConfig, percentiles, run_load


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _load(url: str, args: argparse.Namespace, phases: list[tuple[float, float]], record: bool) -> dict[str, Any]:
    config = LoadConfig(url, MODEL, sizes=args.sizes, seed=args.seed, timeout_s=args.timeout, binary=args.binary,
                        phases=tuple(phases), record_requests=record)
    return run_load(config, command=[sys.executable, *sys.argv])


CRITERIA = {
    "server": "server-side: >= 95% of accepted answered within the SLA (handler arrival to response, the server's "
              "histogram), <= 5% refused, no errors",
    "client": "client-side: accepted p95 <= SLA (from scheduled arrival), <= 1% refused, no errors",
}


def _meets(result: dict[str, Any], server: dict[str, float], args: argparse.Namespace) -> bool:
    if result["errors"] or result["latency_ms"] is None:
        return False
    if args.criterion == "client":
        return result["latency_ms"]["p95"] <= args.sla_ms and result["refused"] <= 0.01 * result["sent"]
    return _within_sla(server, args.sla_ms) >= 0.95 and result["refused"] <= 0.05 * result["sent"]


def _within_sla(server: dict[str, float], sla_ms: float) -> float:
    """The fraction of accepted requests the server answered within the largest histogram bound <= SLA."""
    bounds = [k for k in server if k.startswith("le=") and k != "le=+Inf" and _bound(k) * 1e3 <= sla_ms + 1e-9]
    total = server.get("le=+Inf", 0.0)
    return max((server[k] for k in bounds), default=0.0) / total if total else 0.0


def find_rate(url: str, args: argparse.Namespace) -> tuple[float, list[dict[str, Any]]]:
    """The highest rate meeting `--criterion` (`CRITERIA`) in short runs: x1.5 up from --start-qps, then
    bisection."""
    trials: list[dict[str, Any]] = []

    def trial(qps: float) -> bool:
        before = _server_counts(url)
        result = _load(url, args, [(qps, args.search_s)], record=False)
        server = _delta(before, _server_counts(url))
        ok = _meets(result, server, args)
        trials.append({"qps": qps, "meets": ok, "sent": result["sent"], "refused": result["refused"],
                       "errors": result["errors"], "latency_ms": result["latency_ms"],
                       "server_within_sla": _within_sla(server, args.sla_ms)})
        _say(f"search {qps:7.1f} qps: p95 {(result['latency_ms'] or {}).get('p95', float('nan')):6.2f} ms, "
             f"server within SLA {trials[-1]['server_within_sla']:.3f}, refused {result['refused']}/{result['sent']}, "
             f"errors {result['errors']}: {'meets' if ok else 'misses'}")
        return ok

    low, high = 0.0, args.start_qps
    while trial(high):
        low, high = high, high * 1.5
    for _ in range(args.bisect):
        middle = (low + high) / 2 if low else high / 2
        if trial(middle):
            low = middle
        else:
            high = middle
    if not low:
        raise RuntimeError(f"no rate down to {high:g} qps meets the criterion: {CRITERIA[args.criterion]}")
    return low, trials


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(after) | set(before)}


def _records(result: dict[str, Any]) -> np.ndarray:
    """Each request as a row: scheduled s, latency ms, status (0: none), rows."""
    return np.array([[s, ms, status or 0, rows] for s, ms, status, rows in result["requests"]], dtype=np.float64)


def _summary(r: np.ndarray, seconds: float) -> dict[str, Any]:
    ok, refused = r[r[:, 2] == 200], r[r[:, 2] == 429]
    errors = r[(r[:, 2] != 200) & (r[:, 2] != 429)]
    return {"sent": len(r), "offered_qps": len(r) / seconds, "accepted": len(ok), "accepted_qps": len(ok) / seconds,
            "refused": len(refused), "refused_fraction": len(refused) / max(len(r), 1),
            "errors": len(errors), "error_statuses": sorted({int(s) for s in errors[:, 2]}),
            "accepted_latency_ms": percentiles(ok[:, 1].tolist()),
            "refusal_latency_ms": percentiles(refused[:, 1].tolist())}


def _window_ok(r: np.ndarray, start: float, p99_ms: float, refused_level: float) -> bool:
    w = r[(r[:, 0] >= start) & (r[:, 0] < start + 1.0)]
    ok = w[w[:, 2] == 200]
    p99 = float(np.percentile(ok[:, 1], 99)) if len(ok) else float("inf")
    return p99 <= p99_ms and np.count_nonzero(w[:, 2] == 429) <= refused_level * len(w)


def recovery_s(r: np.ndarray, burst_end: float, end: float, p99_ms: float, refused_level: float) -> float | None:
    """Seconds after `burst_end` from which every 1-s window (sliding by 0.1 s) to the end has accepted p99
    <= `p99_ms` and refused fraction <= `refused_level`; None if the last window does not."""
    starts = np.arange(burst_end, end - 1.0 + 1e-9, 0.1)
    good = [_window_ok(r, s, p99_ms, refused_level) for s in starts]
    if not good or not good[-1]:
        return None
    first = len(good) - 1
    while first > 0 and good[first - 1]:
        first -= 1
    return round(float(starts[first] - burst_end), 3)


def _p99(r: np.ndarray, until: float) -> float:
    ok = r[(r[:, 0] < until) & (r[:, 2] == 200)]
    return float(np.percentile(ok[:, 1], 99)) if len(ok) else float("inf")


def timeline(r: np.ndarray, end: float) -> list[dict[str, Any]]:
    rows = []
    for t in range(int(np.ceil(end))):
        w = r[(r[:, 0] >= t) & (r[:, 0] < t + 1)]
        ok = w[w[:, 2] == 200]
        rows.append({"t": t, "sent": len(w), "accepted": len(ok), "refused": int(np.count_nonzero(w[:, 2] == 429)),
                     "errors": int(np.count_nonzero((w[:, 2] != 200) & (w[:, 2] != 429))),
                     "accepted_p99_ms": round(float(np.percentile(ok[:, 1], 99)), 2) if len(ok) else None})
    return rows


def _server_counts(url: str) -> dict[str, float]:
    """The server's answers by status, and its accepted-latency histogram (handler arrival to response:
    what the server sees, without the client's and the socket's time) as `le=SECONDS` cumulative counts."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for s in family.samples:
            if s.labels.get("model") != MODEL:
                continue
            if s.name == "recc_requests_total":
                counts[s.labels["status"]] = s.value
            elif s.name == "recc_request_latency_seconds_bucket":
                counts[f"le={s.labels['le']}"] = s.value
    return counts


def _bound(key: str) -> float:
    return float(key[3:]) if key.startswith("le=") else -1.0


def overload(url: str, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    phases = [(rate, args.before_s), (2 * rate, args.burst_s), (rate, args.after_s)]
    _say(f"phases: {phases}")
    before = _server_counts(url)
    result = _load(url, args, phases, record=True)
    after = _server_counts(url)
    r = _records(result)
    bounds = np.cumsum([0.0] + [s for _, s in phases])
    names = ["before (R)", "burst (2R)", "after (R)"]
    per_phase = {name: _summary(r[(r[:, 0] >= lo) & (r[:, 0] < hi)], hi - lo)
                 for name, lo, hi in zip(names, bounds[:-1], bounds[1:])}
    baseline = per_phase["before (R)"]["refused_fraction"]
    burst_end, end = float(bounds[2]), float(bounds[3])
    server = _delta(before, after)
    return {"phases_qps_s": phases, "per_phase": per_phase,
            "recovery_s": recovery_s(r, burst_end, end, args.sla_ms, baseline + 0.01),
            "recovery_s_no_refusals": recovery_s(r, burst_end, end, args.sla_ms, 0.0),
            "recovery_s_to_baseline": recovery_s(r, burst_end, end, max(args.sla_ms, _p99(r, bounds[1])),
                                                 baseline + 0.01),
            "recovery_rule": "from the end of the burst until every later 1-s window (sliding by 0.1 s, by "
                             "scheduled arrival) has accepted p99 <= SLA and refused fraction <= the first phase's "
                             "+ 1 point (recovery_s) or = 0 (recovery_s_no_refusals), or accepted p99 <= max(SLA, "
                             "the first phase's p99) and refusals as recovery_s (recovery_s_to_baseline); null: "
                             "not within the last phase",
            "server_within_sla": _within_sla(server, args.sla_ms),
            "server_counts": {k: server[k] for k in sorted(server) if not k.startswith("le=")},
            "server_accepted_latency_cumulative": {k[3:]: server[k] for k in sorted(server, key=_bound)
                                                   if k.startswith("le=")},
            "client_counts": {"200": int(np.count_nonzero(r[:, 2] == 200)), "429": int(np.count_nonzero(r[:, 2] == 429))},
            "timeline": timeline(r, end)}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", help="an artifact to serve (default: dlrm-rmc1 at --scale, compiled here)")
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--sla-ms", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=None, help="the latency-bounded rate R (default: searched)")
    parser.add_argument("--criterion", choices=sorted(CRITERIA), default="server",
                        help="what R must meet (default server: see CRITERIA)")
    parser.add_argument("--start-qps", type=float, default=20.0, help="the search's first rate (default 20)")
    parser.add_argument("--search-s", type=float, default=3.0, help="seconds per search run (default 3)")
    parser.add_argument("--bisect", type=int, default=3, help="bisection steps after the ladder (default 3)")
    parser.add_argument("--before-s", type=float, default=10.0)
    parser.add_argument("--burst-s", type=float, default=60.0, help="seconds at 2R (default 60)")
    parser.add_argument("--after-s", type=float, default=10.0)
    parser.add_argument("--sizes", default="deeprecsys", help="items per query, as recc loadgen --sizes")
    parser.add_argument("--binary", action="store_true", help="binary tensors instead of JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a request counts as an error")
    parser.add_argument("--server-arg", action="append", default=[], help="extra `recc serve` argument (repeat)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "serving" / "overload.json"))
    parser.add_argument("--note", default="", help="free text kept in the results (what else ran, ...)")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(args.artifact) if args.artifact else _compile(args.scale, Path(tmp))
        port = _free_port()
        command = [sys.executable, "-m", "recc.cli", "serve", f"{MODEL}={artifact}", "--port", str(port),
                   "--sla-ms", f"{args.sla_ms:g}", "--log-level", "warning", *args.server_arg]
        load_before = os.getloadavg()[0]
        process = _serve(command, port, Path(tmp) / "serve.log")
        try:
            url = f"http://127.0.0.1:{port}"
            rate, trials = (args.rate, []) if args.rate else find_rate(url, args)
            measured = overload(url, rate, args)
        finally:
            _stop(process)
        load_after = os.getloadavg()[0]
    machine = describe_machine()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "recc", "bench/serving_overload.py"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.strip()
    report = {"command": shlex.join([sys.executable, *sys.argv]), "server_command": shlex.join(command),
              "git_commit": machine["git_commit"], "git_dirty": bool(dirty), "cpu": machine["cpu_model"],
              "logical_cores": machine["logical_cores"],
              "artifact": args.artifact or f"dlrm-rmc1 at scale {args.scale}, compiled here",
              "sla_ms": args.sla_ms, "sizes": args.sizes, "binary": args.binary,
              "load_avg_1m_before_after": [load_before, load_after], "note": args.note,
              "client": "recc.runtime.loadgen.run_load in the bench's process, on the same cores as the server",
              "rate_R": rate, "rate_criterion": "given (--rate)" if args.rate else CRITERIA[args.criterion],
              "rate_search": trials, **measured}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({"rate_R": rate, "recovery_s": measured["recovery_s"],
                      "per_phase": measured["per_phase"]}, indent=1))


if __name__ == "__main__":
    main()
