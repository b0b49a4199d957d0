"""Operator settings from ARGUS_OPERATOR_* (argus.controlplane.settings): booleans are read by word."""

from __future__ import annotations

import pytest

from argus.controlplane.settings import OperatorSettings


@pytest.mark.parametrize("text,value", [("false", False), ("False", False), ("0", False), ("no", False),
                                        ("true", True), ("1", True), ("yes", True)])
def test_cluster_discovery_flag(text, value):
    assert OperatorSettings.from_env({"ARGUS_OPERATOR_CLUSTER_DISCOVERY": text}).cluster_discovery is value


def test_defaults_and_bad_values():
    assert OperatorSettings.from_env({}).cluster_discovery is True
    with pytest.raises(ValueError, match="ARGUS_OPERATOR_CLUSTER_DISCOVERY='maybe': expected bool"):
        OperatorSettings.from_env({"ARGUS_OPERATOR_CLUSTER_DISCOVERY": "maybe"})
    with pytest.raises(ValueError, match="ARGUS_OPERATOR_WORKERS='x': expected int"):
        OperatorSettings.from_env({"ARGUS_OPERATOR_WORKERS": "x"})
