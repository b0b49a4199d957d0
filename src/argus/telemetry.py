"""Metric names shared by the data plane (router, workers) and the control loop.

One table, so the PromQL in argus.adapters.prometheus_source and the metrics the
router exports cannot drift apart. Labels: `service` (T2IService name), `level`.
"""

# Router (argus.router): counters unless noted.
ARRIVALS = "argus_router_arrivals_total"  # requests that reached the router, admitted or shed (demand)
REQUESTS = "argus_router_requests_total"  # {level, outcome=ok|error|shed|timeout}: finished requests
OPTIMAL_LEVEL = "argus_router_optimal_level_total"  # {level}: prompts whose optimal level was this (h_k)
PREDICTED_QUALITY = "argus_router_predicted_quality"  # histogram, predicted relative quality (%) served
LATENCY = "argus_router_latency_seconds"  # histogram {level}: end-to-end latency in the router
PENDING = "argus_router_pending"  # gauge {level}: requests in flight to workers of this level
CACHE_LOOKUPS = "argus_router_cache_lookups_total"  # {result=hit|miss}
RETRIES = "argus_router_retries_total"  # {level}: retries after a replica failure
SHED = "argus_router_shed_total"  # {reason}: requests refused for overload
LATE_RUNGS = "argus_router_late_rung_total"  # {level, served}: requests a worker ran faster to make their deadline
SLO_VIOLATIONS = "argus_router_slo_violations_total"  # {level}: finished later than the SLO
POLICY_VERSION = "argus_router_policy_version"  # gauge: version of the policy in force
POLICY_REJECTED = "argus_router_policy_rejected_total"  # invalid policy documents ignored

# Worker (Triton python backend custom metrics), labelled {level}.
WORKER_CACHE = "argus_worker_cache_total"  # {level, result=hit|miss|fallback, reason}
WORKER_STORE_ERRORS = "argus_worker_store_errors_total"  # {level, op=open|read|write}

# Operator / control loop.
DECISIONS = "argus_operator_decisions_total"  # {service, changed=true|false}
SOLVE_SECONDS = "argus_operator_solve_seconds"  # histogram
RECONCILE_ERRORS = "argus_operator_errors_total"  # {service, kind}
