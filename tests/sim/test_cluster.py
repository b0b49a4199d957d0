"""Replica lifecycle on a fixed set of GPUs.

Cases: the initial allocation is warm at t=0; an added replica serves load_time after the
decision; a busy replica being removed frees its GPU only when its batch ends; loading replicas
are cancelled before serving ones are removed; the budget caps start-ups; availability only counts
loaded replicas.
"""

import numpy as np

from argus.sim.cluster import Cluster


def test_initial_allocation_is_warm():
    c = Cluster(4, [10.0, 20.0], [2, 1])
    assert c.replicas() == [2, 1] and c.available(0.0) == [True, True]
    assert len(c.pool) == 1


def test_added_replica_serves_after_load_time():
    c = Cluster(2, [10.0, 20.0], [1, 0])
    c.apply([1, 1], now=5.0)
    assert c.ready[1].tolist() == [25.0]
    assert c.available(24.0) == [True, False] and c.available(25.0) == [True, True]
    assert c.starts == 1


def test_busy_replica_frees_its_gpu_when_its_batch_ends():
    c = Cluster(1, [10.0, 20.0], [1, 0])
    c.free[0][:] = 40.0  # serving a batch until t=40
    c.apply([0, 1], now=30.0)
    assert c.ready[1].tolist() == [60.0]  # GPU free at 40, then a 20 s load


def test_loading_replicas_are_cancelled_first():
    c = Cluster(3, [10.0, 10.0], [2, 0])
    c.apply([3, 0], now=0.0)  # third replica loading until t=10
    c.free[0][:2] = [5.0, 6.0]  # the two warm ones are busy
    c.apply([2, 1], now=1.0)
    assert sorted(c.ready[0].tolist()) == [0.0, 0.0]
    assert c.ready[1].tolist() == [11.0]  # took the cancelled replica's GPU at once


def test_budget_caps_start_ups():
    c = Cluster(2, [1.0, 1.0], [1, 0])
    c.apply([1, 5], now=0.0)
    assert c.replicas() == [1, 1]
    assert np.isclose(c.ready[1][0], 1.0)


def test_in_place_switch_keeps_the_replica_busy_until_its_batch_ends_and_loads_nothing():
    c = Cluster(3, [10.0, 20.0, 30.0], [3, 0, 0], models=["sdxl", "sdxl", "tiny"])
    c.free[0][:] = [0.0, 40.0, 0.0]  # one of them serves a batch until t=40
    c.apply([1, 1, 1], now=30.0)
    assert c.switches == 1 and c.starts == 1
    assert c.ready[1].tolist() == [0.0] and c.free[1].tolist() == [0.0]  # an idle one switched: serves at once
    assert c.ready[2].tolist() == [60.0]  # another model loads on the freed GPU
    assert sorted(c.free[0].tolist()) == [40.0]  # the busy one kept its level (switch soonest-free first)
    without = Cluster(3, [10.0, 20.0, 30.0], [3, 0, 0])
    without.apply([1, 1, 1], now=30.0)
    assert without.switches == 0 and without.starts == 2 and without.ready[1].tolist() == [50.0]
