"""The one module that queries Prometheus (prometheus-api-client): router metrics -> MetricsSnapshot.

PromQL is built from the names in argus.telemetry; `parse` turns the raw query results into a
snapshot and is pure, so it is tested on hand-written results; `PrometheusSource.snapshot` fetches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from argus import telemetry as t
from argus.control.observed import MetricsSnapshot, MetricsUnavailable


def queries(service: str, window: str) -> dict[str, str]:
    """The PromQL of one snapshot, keyed by the snapshot field it feeds."""
    sel = f'service="{service}"'
    return {
        "demand": f"sum(rate({t.ARRIVALS}{{{sel}}}[{window}]))",
        "h": f"sum by (level) (rate({t.OPTIMAL_LEVEL}{{{sel}}}[{window}]))",
        "throughput": f'sum by (level) (rate({t.REQUESTS}{{{sel},outcome="ok"}}[{window}]))',
        "queues": f"sum by (level) ({t.PENDING}{{{sel}}})",
        "quality": (f"sum(rate({t.PREDICTED_QUALITY}_sum{{{sel}}}[{window}])) / "
                    f"sum(rate({t.PREDICTED_QUALITY}_count{{{sel}}}[{window}]))"),
        "slo_violations": f"sum(rate({t.SLO_VIOLATIONS}{{{sel}}}[{window}]))",
    }


def _value(sample: dict[str, Any]) -> float | None:
    try:
        v = float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return v if v == v and v not in (float("inf"), float("-inf")) else None  # drop NaN/Inf (0/0 rates)


def _scalar(result: list[dict[str, Any]]) -> float | None:
    vals = [v for v in (_value(s) for s in result) if v is not None]
    return sum(vals) if vals else None


def _by_level(result: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in result:
        level = (s.get("metric") or {}).get("level")
        v = _value(s)
        if level and v is not None:
            out[level] = out.get(level, 0.0) + max(0.0, v)
    return out


def parse(raw: dict[str, list[dict[str, Any]]], service: str = "") -> MetricsSnapshot:
    """Build a snapshot from query results (instant vectors); NoMetrics when demand has no series."""
    demand = _scalar(raw.get("demand") or [])
    if demand is None:
        raise MetricsUnavailable("NoMetrics", f"Prometheus has no {t.ARRIVALS} series for service {service!r}")
    h = _by_level(raw.get("h") or [])
    total = sum(h.values())
    return MetricsSnapshot(
        demand=max(0.0, demand),
        h={k: v / total for k, v in h.items()} if total > 0 else {},
        throughput=_by_level(raw.get("throughput") or []),
        queues=_by_level(raw.get("queues") or []),
        quality=_scalar(raw.get("quality") or []),
        slo_violations=max(0.0, _scalar(raw.get("slo_violations") or []) or 0.0),
    )


_SYSTEM_ERRORS = {"builtins", "socket", "ssl"}  # modules of OS-level errors (their text is in the library's)


def _chain(e: BaseException) -> list[BaseException]:
    """`e` and what caused it, outermost first: requests wraps urllib3's MaxRetryError in args[0],
    which names the connection error in .reason, which chains the socket error."""
    chain: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and all(cur is not c for c in chain):
        chain.append(cur)
        reason = getattr(cur, "reason", None)
        wrapped = next((a for a in cur.args if isinstance(a, BaseException)), None)
        cur = (reason if isinstance(reason, BaseException) else wrapped) or cur.__cause__ or cur.__context__
    return chain


def failure_cause(e: BaseException) -> str:
    """What went wrong, cause first and whole: `Outer: Cause: message`, where Cause is the innermost
    error of a library (urllib3's NewConnectionError, NameResolutionError, ReadTimeoutError), whose
    message names the host and the system error; the outer messages repeat the query URL (hundreds
    of characters of PromQL) and bury the cause at their end."""
    chain = _chain(e)
    cause = next((c for c in reversed(chain) if type(c).__module__ not in _SYSTEM_ERRORS), chain[-1])
    if cause is e:
        return f"{type(e).__name__}: {e}"
    return f"{type(e).__name__}: {type(cause).__name__}: {cause}"


@dataclass
class PrometheusSource:
    """Reads snapshots from Prometheus servers (one client per URL, made on first use)."""

    window: str = "1m"  # rate window; at least two scrape intervals
    timeout_s: float = 5.0
    _clients: dict[str, PrometheusConnect] = field(default_factory=dict)

    def client(self, url: str) -> PrometheusConnect:
        """The client for `url` (no retries: the next control period is the retry)."""
        if url not in self._clients:
            self._clients[url] = PrometheusConnect(url=url, disable_ssl=True, timeout=self.timeout_s,
                                                   retry=Retry(total=0))
        return self._clients[url]

    def fetch(self, url: str, service: str) -> dict[str, list[dict[str, Any]]]:
        """Run every query; PrometheusUnreachable when any fails."""
        prom = self.client(url)
        raw = {}
        for key, q in queries(service, self.window).items():
            try:
                raw[key] = prom.custom_query(q)
            except Exception as e:  # requests' connection errors and PrometheusApiClientException
                raise MetricsUnavailable("PrometheusUnreachable",
                                         f"Prometheus at {url} failed ({key} query): {failure_cause(e)}") from None
        return raw

    def snapshot(self, url: str, service: str) -> MetricsSnapshot:
        """Fetch and parse one snapshot of the service."""
        return parse(self.fetch(url, service), service)
