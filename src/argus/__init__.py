"""Argus: quality-aware, high-throughput text-to-image serving for Kubernetes."""

__version__ = "0.1.0"
