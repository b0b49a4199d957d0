"""Test support, imported as `tests.support.<module>` (pytest puts the repository root on sys.path:
pyproject's `pythonpath`): the KMock API server and its audited variant, the operator process harness
(KMock client, `kopf run`, Prometheus, a fake router exporting the router's real metrics), chart rendering
helpers and policy snapshot builders."""
