"""Router logic without processes.

Cases: the error table maps each domain error to its status, type and Retry-After; the
level draw follows the redirection row and skips levels with no replica (safer first);
the dispatcher picks the least-loaded replica, retries a retryable failure once on
another replica, falls back to the next safer level, and does not retry a timeout or a
rejected input; with no replica it raises NoReplicas; policy documents: invalid ones
are rejected with the field named and the last good one stays, older versions are ignored;
requests shed at admission still count as arrivals (demand).
"""

from __future__ import annotations

import asyncio
import json
import random

import numpy as np
import pytest

from argus.contract import WorkReport
from argus.adapters.triton_client import (Generated, WorkerOverloaded, WorkerRejected, WorkerTimeout,
                                          WorkerUnavailable)
from argus.policy.document import PolicyDocument, PolicyError, parse_policy
from argus.policy.assign import safer_levels, served_level
from argus.router.dispatch import Dispatcher
from argus.router.errors import BadRequest, NoReplicas, Overloaded, Unauthorized, UnknownService, to_http
from argus.router.sources import PolicyStore

LEVELS = ["cache-k0", "cache-k10", "steps-20"]


def policy(version=1, redirection=None):
    return PolicyDocument(version=version, service="s", quality_floor=90, latency_slo_s=30, image_size="64x64",
                          levels=LEVELS,
                          allocation={"cache-k0": 1, "cache-k10": 1}, redirection=redirection or {})


@pytest.mark.parametrize("exc,status,retry", [
    (BadRequest("x", "prompt"), 400, None), (WorkerRejected("x"), 400, None), (Unauthorized("x"), 401, None),
    (UnknownService("x"), 404, None), (Overloaded("x"), 503, "1"), (WorkerOverloaded("x"), 503, "1"),
    (NoReplicas("x"), 503, "2"), (WorkerUnavailable("x"), 503, "2"), (WorkerTimeout("x"), 504, None),
    (RuntimeError("secret"), 500, None),
])
def test_error_table(exc, status, retry):
    code, body, headers = to_http(exc)
    assert code == status
    assert headers.get("Retry-After") == retry
    assert body["error"]["code"] == status
    if status == 500:
        assert "secret" not in json.dumps(body)


def test_served_level_follows_redirection_row():
    p = policy(redirection={"cache-k10": {"cache-k0": 0.25, "cache-k10": 0.75}})
    rng = random.Random(0)
    draws = [served_level("cache-k10", p, rng) for _ in range(4000)]
    assert abs(draws.count("cache-k0") / 4000 - 0.25) < 0.03
    assert served_level("steps-20", p, rng) == "steps-20"  # no row: its own level
    assert served_level("cache-k0", None, rng) == "cache-k0"


def test_served_level_skips_levels_without_replicas_safer_first():
    p = policy()
    assert served_level("steps-20", p, random.Random(0), available={"cache-k0", "cache-k10"}) == "cache-k10"
    assert served_level("cache-k10", p, random.Random(0), available={"steps-20"}) == "steps-20"
    assert safer_levels("steps-20", p) == ["cache-k10", "cache-k0"]


class FakeEndpoints:
    def __init__(self, table):
        self.table = table

    def replicas(self, service, level):
        return list(self.table.get(level, []))

    def services(self):
        return ["s"]

    def refresh(self):
        pass


class FakeClient:
    def __init__(self, url, behaviour, calls):
        self.url, self.behaviour, self.calls = url, behaviour, calls

    async def generate(self, model, prompt, seed, h, w, **kw):
        self.calls.append((self.url, model) if kw.get("level") in (None, model) else (self.url, model, kw["level"]))
        b = self.behaviour.get(self.url)
        if b is not None:
            raise b
        return Generated(np.zeros((h, w, 3), np.uint8), WorkReport(level=model))

    async def close(self):
        pass


def dispatch(table, behaviour, levels, inflight=None):
    calls = []
    d = Dispatcher(FakeEndpoints(table), lambda url: FakeClient(url, behaviour, calls), clock=lambda: 0.0)
    for k, v in (inflight or {}).items():
        d.inflight[k] = v
    kw = dict(prompt="p", seed=1, height=8, width=8, cache_key=None, store_key=None, request_id="r")
    return asyncio.run(d.call("s", levels, 100.0, **kw)), calls


def test_least_loaded_replica_is_picked():
    res, calls = dispatch({"cache-k0": ["a", "b"]}, {}, ["cache-k0"], inflight={"a": 3, "b": 1})
    assert res.replica == "b" and res.retries == 0


def test_retry_once_on_another_replica():
    res, calls = dispatch({"cache-k0": ["a", "b"]}, {"a": WorkerUnavailable("down")}, ["cache-k0"])
    assert res.replica == "b" and res.retries == 1
    assert calls == [("a", "cache-k0"), ("b", "cache-k0")]


def test_worker_switched_in_place_is_called_by_its_model_with_the_level():
    res, calls = dispatch({"steps-20": ["a:1@cache-k0"], "cache-k0": ["b:1"]}, {}, ["steps-20"])
    assert (res.level, res.replica) == ("steps-20", "a:1@cache-k0")
    assert calls == [("a:1", "cache-k0", "steps-20")]


def test_fallback_to_next_safer_level():
    res, calls = dispatch({"cache-k10": ["a"], "cache-k0": ["c"]}, {"a": WorkerOverloaded("full")},
                          ["cache-k10", "cache-k0"])
    assert (res.level, res.replica, res.retries) == ("cache-k0", "c", 1)


@pytest.mark.parametrize("err", [WorkerTimeout("slow"), WorkerRejected("bad")])
def test_no_retry_for_timeout_or_rejection(err):
    with pytest.raises(type(err)):
        dispatch({"cache-k0": ["a", "b"]}, {"a": err}, ["cache-k0"], inflight={"b": 5})


def test_only_one_retry():
    with pytest.raises(WorkerUnavailable):
        dispatch({"cache-k0": ["a", "b", "c"]}, {u: WorkerUnavailable(u) for u in "abc"}, ["cache-k0"])


def test_no_replicas():
    with pytest.raises(NoReplicas):
        dispatch({}, {}, ["cache-k0"])


def test_policy_store_keeps_last_good(tmp_path):
    store = PolicyStore(tmp_path)
    (tmp_path / "s.json").write_text(policy(version=2).to_json())
    store.refresh()
    assert store.get("s").version == 2
    bad = json.loads(policy(version=3).to_json())
    bad["redirection"] = {"cache-k0": {"nope": 1.0}}
    (tmp_path / "s.json").write_text(json.dumps(bad))
    rejected = []
    store._on_rejected = lambda p, e: rejected.append(str(e))
    store.refresh()
    assert store.get("s").version == 2 and "unknown level 'nope'" in rejected[0]
    assert not store.offer(policy(version=1))


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.update(version=-1), "policy.version"),
    (lambda d: d.update(redirection={"cache-k0": {"cache-k0": 0.5}}), "sums to"),
    (lambda d: d.update(allocation={"x": 1}), "unknown level 'x'"),
    (lambda d: d.update(levels=[]), "policy.levels"),
    (lambda d: d.update(level_quality={"x": 90.0}), "level_quality: unknown level 'x'"),
    (lambda d: d.update(level_quality={"cache-k0": 101.0}), r"level_quality\[cache-k0\]: 101.0 outside"),
])
def test_policy_errors_name_the_field(mutate, needle):
    d = json.loads(policy().to_json())
    mutate(d)
    with pytest.raises(PolicyError, match=needle):
        parse_policy(json.dumps(d))


def test_shed_requests_still_count_as_demand():
    from argus.router.app import Router
    from argus.router.metrics import RouterMetrics
    from argus.router.schema import ImageRequest
    from argus.router.settings import RouterSettings

    class Endpoints:
        def replicas(self, service, level):
            return ["127.0.0.1:1"]

        def services(self):
            return ["s"]

        def refresh(self):
            pass

    metrics = RouterMetrics()
    router = Router(RouterSettings(max_pending=2), Endpoints(), metrics)
    router.pending = 1  # one in flight: a request for 2 images exceeds the limit
    with pytest.raises(Overloaded):
        asyncio.run(router.generate(ImageRequest("a cat", 2, 64, 64, None, None, "s", "default")))
    sample = metrics.registry.get_sample_value
    assert sample("argus_router_arrivals_total", {"service": "s"}) == 2
    assert sample("argus_router_shed_total", {"service": "s", "reason": "router_max_pending"}) == 2


def test_policy_of_another_epoch_replaces_a_higher_version():
    """A recreated T2IService (new uid) or a restarted local runtime starts its versions again at 1."""
    store = PolicyStore(None)
    old = policy(version=12).model_copy(update={"epoch": "run-a"})
    assert store.offer(old)
    assert not store.offer(policy(version=3).model_copy(update={"epoch": "run-a"}))  # same lineage, older
    fresh = policy(version=1).model_copy(update={"epoch": "run-b"})
    assert store.offer(fresh) and store.get("s").epoch == "run-b" and store.get("s").version == 1
    assert store.offer(policy(version=2).model_copy(update={"epoch": "run-b"}))
    assert not store.offer(policy(version=2).model_copy(update={"epoch": "run-b"}))


def test_served_quality_falls_back_to_the_policy_level_quality():
    from argus.router.app import served_quality

    doc = policy().model_copy(update={"level_quality": {"cache-k0": 100.0, "cache-k10": 91.5}})
    assert served_quality({"cache-k10": 94.0}, "cache-k10", doc) == 94.0  # the prompt's own prediction
    assert served_quality({"cache-k0": 100.0}, "cache-k10", doc) == 91.5  # no prediction: planned mean
    assert served_quality({}, "cache-k0", None) == 100.0


def test_a_worker_without_the_deadline_input_is_called_again_without_it():
    """A rolling upgrade: an older worker's Triton refuses the DEADLINE input. The router calls it again at once
    without it, and never sends it that replica again; a newer one gets it; other rejections stand."""
    calls = []

    class Old(FakeClient):
        async def generate(self, model, prompt, seed, h, w, **kw):
            calls.append((self.url, kw.get("deadline")))
            if kw.get("deadline") is not None and self.url == "old":
                raise WorkerRejected("unexpected inference input 'DEADLINE' for model 'cache-k0'")
            return Generated(np.zeros((h, w, 3), np.uint8), WorkReport(level=model))

    d = Dispatcher(FakeEndpoints({"cache-k0": ["old"], "steps-20": ["new"]}), lambda url: Old(url, {}, calls),
                   clock=lambda: 0.0)
    kw = dict(prompt="p", seed=1, height=8, width=8, cache_key=None, store_key=None, request_id="r", late_by=5.0)
    for level in ("cache-k0", "cache-k0", "steps-20"):
        res = asyncio.run(d.call("s", [level], 100.0, **kw))
        assert res.retries == 0
    assert calls == [("old", 5.0), ("old", None), ("old", None), ("new", 5.0)]
    d2 = Dispatcher(FakeEndpoints({"cache-k0": ["x"]}), lambda url: FakeClient(url, {"x": WorkerRejected("bad")}, []),
                    clock=lambda: 0.0)
    with pytest.raises(WorkerRejected):
        asyncio.run(d2.call("s", ["cache-k0"], 100.0, **kw))


def test_a_level_past_its_in_flight_limit_takes_no_more_prompts_unless_none_has_room():
    """PolicyDocument.max_in_flight: a level whose replicas hold that many requests each is not offered for
    placement (the prompt goes to its next level with room); with every limited level full, all are offered."""
    d = Dispatcher(FakeEndpoints({"cache-k0": ["a", "b"], "steps-20": ["c"], "steps-25": []}),
                   lambda url: FakeClient(url, {}, []), clock=lambda: 0.0)
    levels = ["cache-k0", "steps-25", "steps-20"]
    d.inflight.update({"a": 20, "b": 21, "c": 22})
    limits = {"cache-k0": 21.5, "steps-20": 21.5}
    assert d.available_levels("s", levels) == {"cache-k0", "steps-20"}  # no limits: replicas decide
    assert d.available_levels("s", levels, limits) == {"cache-k0"}  # steps-20 holds 22 > 21.5 per replica
    d.inflight["a"] = 23
    assert d.available_levels("s", levels, limits) == {"cache-k0", "steps-20"}  # none has room: as if no limit
    d.inflight["c"] = 3
    assert d.available_levels("s", levels, limits) == {"steps-20"}
