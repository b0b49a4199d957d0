"""The one source of truth for Envoy's bootstrap: the local runtime writes it to a file,
the Helm chart ships the same document (rendered by `argus render-manifests`).

Envoy in front of the router does admission and protocol hygiene: request-size limit
(413), local rate limit (429 + Retry-After), circuit breaker on the router cluster
(503 + Retry-After instead of a queue that hangs), route timeout, retries on connect
failure only (a generation is not idempotent in cost), JSON access log, JSON bodies
for every reply Envoy generates itself, and Prometheus stats on a separate listener.
"""

from __future__ import annotations

from dataclasses import dataclass

# Envoy's idle timeout towards the router; the router's HTTP keep-alive (argus.router.__main__) is longer.
ROUTER_IDLE_TIMEOUT_S = 4
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


@dataclass(frozen=True)
class EnvoySettings:
    """Ports and limits of the Envoy front proxy."""

    listen_address: str = "127.0.0.1"
    listen_port: int = 8000
    stats_port: int = 9901  # serves /stats/prometheus only (scraped by Prometheus)
    admin_port: int = 9902  # admin interface, loopback only
    router_host: str = "127.0.0.1"
    router_port: int = 8080
    max_request_bytes: int = 65536  # request bodies larger than this get 413
    route_timeout_s: float = 180.0  # whole request, generation included
    max_connections: int = 1024
    max_pending_requests: int = 128  # circuit breaker: beyond this, 503 + Retry-After at once
    max_requests: int = 256
    rate_limit_rps: float = 0  # local rate limit (token bucket per second); 0 disables
    rate_limit_burst: int = 0
    access_log_path: str = "/dev/stdout"


def _json_body() -> dict:
    return {"json_format": {"error": {"message": "%LOCAL_REPLY_BODY%", "type": "envoy_%RESPONSE_CODE_DETAILS%",
                                      "code": "%RESPONSE_CODE%"}}}


def build_bootstrap(s: EnvoySettings) -> dict:
    """The Envoy bootstrap as a dict (dump it as YAML or JSON)."""
    filters = [{
        "name": "envoy.filters.http.buffer",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                         "max_request_bytes": s.max_request_bytes},
    }]
    if s.rate_limit_rps > 0:
        tokens = max(1, int(s.rate_limit_burst or s.rate_limit_rps))
        filters.append({
            "name": "envoy.filters.http.local_ratelimit",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "argus_ratelimit",
                "token_bucket": {"max_tokens": tokens, "tokens_per_fill": max(1, int(s.rate_limit_rps)),
                                 "fill_interval": "1s"},
                "filter_enabled": {"runtime_key": "rl_enabled", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
                "filter_enforced": {"runtime_key": "rl_enforced", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
                "response_headers_to_add": [{"append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                             "header": {"key": "Retry-After", "value": "1"}}],
            }})
    filters.append({"name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    access_log = [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "path": s.access_log_path,
        "log_format": {"json_format": {
            "time": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
            "status": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%", "bytes_in": "%BYTES_RECEIVED%",
            "bytes_out": "%BYTES_SENT%", "duration_ms": "%DURATION%", "request_id": "%REQ(X-REQUEST-ID)%"}}}}]
    retry_after = [{"append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "header": {"key": "Retry-After", "value": "1"}}]
    ingress = {
        "name": "ingress",
        "address": {"socket_address": {"address": s.listen_address, "port_value": s.listen_port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": _HCM, "stat_prefix": "ingress", "codec_type": "AUTO",
                "generate_request_id": True, "access_log": access_log,
                "route_config": {"name": "argus", "virtual_hosts": [{
                    "name": "argus", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {
                        "cluster": "router", "timeout": f"{s.route_timeout_s:g}s",
                        "retry_policy": {"retry_on": "connect-failure,refused-stream", "num_retries": 1}}}]}]},
                "http_filters": filters,
                # Replies Envoy makes itself (413, 503 overflow, 429) get JSON bodies; 503s get Retry-After.
                "local_reply_config": {
                    "mappers": [{"filter": {"status_code_filter": {"comparison": {
                        "op": "EQ", "value": {"default_value": 503, "runtime_key": "lr_503"}}}},
                        "headers_to_add": retry_after}],
                    "body_format": _json_body()},
            }}]}],
    }
    stats = {
        "name": "stats",
        "address": {"socket_address": {"address": s.listen_address, "port_value": s.stats_port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": _HCM, "stat_prefix": "stats",
                "route_config": {"virtual_hosts": [{"name": "stats", "domains": ["*"], "routes": [
                    {"match": {"path": "/stats/prometheus"}, "route": {"cluster": "envoy_admin"}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}],
    }
    def cluster(name, host, port, breakers=None, idle_timeout=None):
        c = {"name": name, "type": "STATIC", "connect_timeout": "1s",
             "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                 "address": {"socket_address": {"address": host, "port_value": port}}}}]}]}}
        if breakers:
            c["circuit_breakers"] = {"thresholds": [breakers]}
        if idle_timeout:
            # Envoy must close an idle upstream connection before the server does (uvicorn's keep-alive),
            # or a request sent on a connection the server is closing is reset (a spurious 503).
            c["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"idle_timeout": idle_timeout},
                "explicit_http_config": {"http_protocol_options": {}}}}
        return c

    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": s.admin_port}}},
        "static_resources": {
            "listeners": [ingress, stats],
            "clusters": [
                cluster("router", s.router_host, s.router_port, {
                    "priority": "DEFAULT", "max_connections": s.max_connections,
                    "max_pending_requests": s.max_pending_requests, "max_requests": s.max_requests,
                    "max_retries": 3}, idle_timeout=f"{ROUTER_IDLE_TIMEOUT_S}s"),
                cluster("envoy_admin", "127.0.0.1", s.admin_port),
            ],
        },
    }
