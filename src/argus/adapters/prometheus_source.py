"""The one module that queries Prometheus (prometheus-api-client): router metrics -> MetricsSnapshot.

PromQL is built from the names in argus.telemetry; `parse` turns the raw query results into a
snapshot and is pure, so it is tested on hand-written results; `PrometheusSource.snapshot` fetches.
For many services at once (the operator's control loop), `PrometheusSource.readings` asks one query
per field for all of them (`sum by (service, ...)` over a `service=~"a|b"` selector, or over every
service when the names would make the URL too long) and splits the answer with `parse_batch`: the
number of queries per period no longer grows with the number of services.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import quote

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from argus import telemetry as t
from argus.control.observed import MetricsSnapshot, MetricsUnavailable


def _queries(sel: str, window: str, by: tuple[str, ...]) -> dict[str, str]:
    """The PromQL of the snapshot fields for the series `sel` selects, each summed by `by` (and level)."""
    def agg(*labels: str) -> str:
        labels = (*by, *labels)
        return f"sum by ({', '.join(labels)}) " if labels else "sum"

    return {
        "demand": f"{agg()}(rate({t.ARRIVALS}{{{sel}}}[{window}]))",
        "h": f"{agg('level')}(rate({t.OPTIMAL_LEVEL}{{{sel}}}[{window}]))",
        "throughput": f'{agg("level")}(rate({t.REQUESTS}{{{sel},outcome="ok"}}[{window}]))',
        "queues": f"{agg('level')}({t.PENDING}{{{sel}}})",
        "quality": (f"{agg()}(rate({t.PREDICTED_QUALITY}_sum{{{sel}}}[{window}])) / "
                    f"{agg()}(rate({t.PREDICTED_QUALITY}_count{{{sel}}}[{window}]))"),
        "slo_violations": f"{agg()}(rate({t.SLO_VIOLATIONS}{{{sel}}}[{window}]))",
    }


def queries(service: str, window: str) -> dict[str, str]:
    """The PromQL of one snapshot, keyed by the snapshot field it feeds."""
    return _queries(f'service="{service}"', window, ())


def _string(text: str) -> str:
    """`text` as the inside of a PromQL double-quoted string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _pattern(service: str) -> str:
    """One alternative of the service selector's regex (names are DNS labels; escaped all the same)."""
    return _string(re.escape(service))


def batch_queries(services: list[str] | None, window: str) -> dict[str, str]:
    """The PromQL of the snapshots of every service in `services` (None: of every service Prometheus
    has), one query per field, summed by service."""
    sel = 'service!=""' if services is None else f'service=~"{"|".join(_pattern(s) for s in services)}"'
    return _queries(sel, window, ("service",))


# The client sends PromQL as a GET parameter, and proxies in front of Prometheus commonly accept an
# 8 KiB request line: past BATCH_URL_CHARS of URL-encoded names (the quality query carries its
# selector twice), the batch asks for every service's series and keeps the ones it wants.
BATCH_URL_CHARS = 3500


def _selectable(services: list[str]) -> bool:
    return sum(len(quote(_pattern(s))) + 3 for s in services) <= BATCH_URL_CHARS  # 3: the encoded "|"


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


Reading = MetricsSnapshot | MetricsUnavailable  # one service's snapshot, or why there is none


def parse_batch(raw: dict[str, list[dict[str, Any]]], services: Iterable[str]) -> dict[str, Reading]:
    """Split results summed by service into one reading per service (pure); a service without a
    demand series reads NoMetrics, and series of services not asked for are ignored."""
    per: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in services}
    for key, result in raw.items():
        for sample in result:
            own = per.get((sample.get("metric") or {}).get("service"))
            if own is not None:
                own.setdefault(key, []).append(sample)
    out: dict[str, Reading] = {}
    for s, own in per.items():
        try:
            out[s] = parse(own, s)
        except MetricsUnavailable as e:
            out[s] = e
    return out


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

    def _query(self, url: str, key: str, promql: str) -> list[dict[str, Any]]:
        """One instant query; every failure is PrometheusUnreachable, naming the query and the cause."""
        try:
            return self.client(url).custom_query(promql)
        except Exception as e:  # requests' connection errors and PrometheusApiClientException
            raise MetricsUnavailable("PrometheusUnreachable",
                                     f"Prometheus at {url} failed ({key} query): {failure_cause(e)}") from None

    def fetch(self, url: str, service: str) -> dict[str, list[dict[str, Any]]]:
        """Run every query; PrometheusUnreachable when any fails."""
        return {key: self._query(url, key, q) for key, q in queries(service, self.window).items()}

    def snapshot(self, url: str, service: str) -> MetricsSnapshot:
        """Fetch and parse one snapshot of the service."""
        return parse(self.fetch(url, service), service)

    def readings(self, url: str, services: Iterable[str]) -> dict[str, Reading]:
        """Every service's reading from one query per field for all of them; never raises: when
        Prometheus fails, that failure is every service's reading."""
        names = list(dict.fromkeys(services))
        raw: dict[str, list[dict[str, Any]]] = {}
        try:
            for key, q in batch_queries(names if _selectable(names) else None, self.window).items():
                raw[key] = self._query(url, key, q)
        except MetricsUnavailable as e:
            return {s: e for s in names}
        return parse_batch(raw, names)
