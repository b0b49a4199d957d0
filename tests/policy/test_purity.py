"""argus.policy stays pure: no Kubernetes, kopf, HTTP, Prometheus or clock imports.

Cases:
- every module under src/argus/policy imports none of the forbidden modules (AST scan);
- (the clock only enters through Snapshot.now; determinism is in test_properties.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import argus.policy

FORBIDDEN = {"kopf", "kubernetes", "httpx", "fastapi", "uvicorn", "prometheus_client",
             "prometheus_api_client", "time", "datetime", "requests", "socket", "tritonclient"}
POLICY = Path(argus.policy.__file__).parent


@pytest.mark.parametrize("path", sorted(POLICY.glob("*.py")), ids=lambda p: p.name)
def test_no_io_or_clock_imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    assert not names & FORBIDDEN, f"{path.name} imports {sorted(names & FORBIDDEN)}"
