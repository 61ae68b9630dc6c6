"""The server's Prometheus metrics, in a registry of its own (several servers may live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class ServerMetrics:
    """Names as exported (docs/serving.md lists them): recc_requests_total{model,status},
    recc_refused_total{model}, recc_direct_total{model}, recc_queue_depth{model}, recc_batch_size{model} (rows per model call),
    recc_request_latency_seconds{model} (arrival to response), recc_inference_seconds{model} (one call),
    recc_queue_seconds{model} (arrival to first call), recc_worker_restarts_total{model},
    recc_swaps_total{model,result} (hot swaps: done, failed)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("recc_requests", "inference requests answered, by HTTP status",
                                ["model", "status"], registry=r)
        self.refused = Counter("recc_refused", "requests refused by admission control (429)", ["model"], registry=r)
        self.direct = Counter("recc_direct", "requests run at once on the event loop: the model was idle and the "
                              "call short (no batching window, no thread hop)", ["model"], registry=r)
        self.queue_depth = Gauge("recc_queue_depth", "requests waiting to be batched", ["model"], registry=r)
        self.batch_size = Histogram("recc_batch_size", "rows per model call", ["model"], buckets=BATCH_BUCKETS,
                                    registry=r)
        self.latency = Histogram("recc_request_latency_seconds", "time from a request's arrival to its response",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.queueing = Histogram("recc_queue_seconds", "time from a request's arrival at the batcher to the start "
                                  "of its first call (queueing, apart from compute)", ["model"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.restarts = Counter("recc_worker_restarts", "worker processes replaced after dying", ["model"], registry=r)
        self.swaps = Counter("recc_swaps", "hot swaps of a model's artifact, by result (done, failed)",
                             ["model", "result"], registry=r)
        self.inference = Histogram("recc_inference_seconds", "time of one model call (a batch)", ["model"],
                                   buckets=LATENCY_BUCKETS, registry=r)
