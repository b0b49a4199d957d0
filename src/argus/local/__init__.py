"""The local runtime: the whole system as child processes on one machine (no Kubernetes)."""
