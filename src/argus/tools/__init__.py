"""Load, trace and experiment tooling: the load generator (`loadgen`), its reports and plots (`report`),
prompt and arrival workloads (`workload`), the request client (`client`) and experiments against a running
local system (`experiment`: calibrate, replay, wait for readiness). Used by the CLI and the benchmarks; no
driver imports it."""
