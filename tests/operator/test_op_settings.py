"""Operator settings from ARGUS_OPERATOR_* (argus.controlplane.settings): booleans are read by word; the
operator-wide latent storage class fills only specs that name none and cache."""

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


def test_latent_storage_class_default_fills_only_specs_without_one():
    from argus.spec import parse_spec

    assert OperatorSettings.from_env({"ARGUS_OPERATOR_LATENT_STORAGE_CLASS": "nfs"}).latent_storage_class == "nfs"
    base = {"throughputTarget": 1, "gpus": 2}
    assert parse_spec(base).with_default_storage_class("nfs").cache.storage_class_name == "nfs"
    own = parse_spec({**base, "cache": {"storageClassName": "cephfs"}})
    assert own.with_default_storage_class("nfs").cache.storage_class_name == "cephfs"
    off = parse_spec({**base, "levels": ["cache-k0"], "cache": {"enabled": False}})
    assert off.with_default_storage_class("nfs").cache.storage_class_name is None
    assert parse_spec(base).with_default_storage_class("").cache.storage_class_name is None
