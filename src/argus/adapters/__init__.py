"""One adapter per outside system: Triton (gRPC client), Prometheus, Kubernetes, Envoy config."""
