"""Open-loop replay of an arrival trace against the HTTP API; one record per request.

Open loop: each request is sent at its arrival time whether or not earlier ones have
finished, so overload shows up as latency, 429/503 answers and SLO violations rather
than as a slower client.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx


@dataclass
class Record:
    """What happened to one request."""

    t_sent: float  # seconds since the replay started
    latency: float
    status: int
    level: str | None = None
    optimal_level: str | None = None
    predicted_quality: float | None = None
    cache_hit: bool | None = None
    error: str | None = None
    retries: int | None = None  # worker calls the router retried (another replica or a safer level)
    replica: str | None = None  # the worker replica that served it (per-replica batch fits, sim fidelity)
    prompt: str | None = None
    seed: int | None = None
    scorable: bool | None = None  # the exact scorer could score the prompt (None: not scored)
    exact_score: float | None = None  # the exact scorer's 0-100 score of the returned image
    late_from: str | None = None  # the level assigned, when a worker ran it faster to make its deadline
    late_why: str | None = None  # ... and why (argus.contract.Pace: deadline or surge)


# (base64 PNG, prompt) -> (scorable, score): the exact scorer, run off the event loop
Measure = Callable[[str, str], tuple[bool, float | None]]


def exact_measure(b64: str, prompt: str) -> tuple[bool, float | None]:
    """The world's exact scorer on one returned image (scorable False for prompts outside the grammar)."""
    from argus.world.scorer import score_b64_png

    res = score_b64_png(b64, prompt)
    return res.scorable, res.score


@dataclass
class Sample:
    """The allocation (replicas per level) at one moment of the replay."""

    t: float
    allocation: dict
    overload: bool | None = None  # the control loop's last plan declared overload
    degraded: bool | None = None  # the control loop reported Degraded (e.g. no metrics)


async def replay(url: str, arrivals, prompts: list[str], *, size: str, timeout_s: float, seed: int = 0,
                 state_file: Path | None = None, api_key: str | None = None,
                 progress: bool = True, measure: Measure | None = None) -> tuple[list[Record], list[Sample]]:
    """Send one request per arrival time (seconds), prompts drawn at random; return records and allocation samples.

    With `measure`, every returned image is scored after its response arrives, on one worker thread
    (never on the event loop that sends), and the records carry the scores once all are done.
    """
    rng = random.Random(seed)
    records: list[Record] = []
    samples: list[Sample] = []
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    start = time.monotonic()
    total = len(arrivals)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argus-score") if measure else None
    scoring: list[tuple[Record, asyncio.Future]] = []

    async def one(at: float, prompt: str, i: int):
        delay = at - (time.monotonic() - start)
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.monotonic()
        body = {"prompt": prompt, "size": size, "seed": i}
        try:
            r = await client.post(f"{url}/v1/images/generations", json=body, headers=headers, timeout=timeout_s)
            lat = time.monotonic() - t0
            if r.status_code == 200:
                doc = r.json()
                rep = doc["argus"][0]
                rec = Record(t0 - start, lat, 200, rep.get("level"), rep.get("optimal_level"),
                             rep.get("predicted_quality"), rep.get("cache_hit"), retries=rep.get("retries"),
                             replica=rep.get("replica"), prompt=prompt, seed=i, late_from=rep.get("late_from"),
                             late_why=rep.get("late_why"))
                records.append(rec)
                if pool is not None:
                    fut = asyncio.get_running_loop().run_in_executor(pool, measure, doc["data"][0]["b64_json"], prompt)
                    scoring.append((rec, fut))
            else:
                records.append(Record(t0 - start, lat, r.status_code, error=r.text[:200], prompt=prompt, seed=i))
        except httpx.HTTPError as e:
            records.append(Record(t0 - start, time.monotonic() - t0, 0, error=type(e).__name__, prompt=prompt, seed=i))

    tty = sys.stderr.isatty()
    ticks = 0

    async def sampler():
        nonlocal ticks
        while True:
            if state_file is not None:
                try:
                    st = json.loads(Path(state_file).read_text())
                    alloc: dict[str, int] = {}
                    for rep in st.get("replicas", {}).values():
                        alloc[rep["level"]] = alloc.get(rep["level"], 0) + 1
                    status = st.get("status") or {}
                    samples.append(Sample(time.monotonic() - start, alloc, (status.get("observed") or {}).get("overload"),
                                          (status.get("conditions") or {}).get("Degraded")))
                except (OSError, ValueError):
                    pass
            ticks += 1
            if progress and (tty or ticks % 10 == 0):
                done = len(records)
                ok = sum(1 for r in records if r.status == 200)
                lead, end = ("\r", "") if tty else ("", "\n")
                print(f"{lead}[load] t={time.monotonic() - start:5.0f}s  sent {min(total, _sent()):4d}/{total}"
                      f"  done {done:4d}  ok {ok:4d}", end=end, file=sys.stderr, flush=True)
            await asyncio.sleep(1.0)

    def _sent():
        now = time.monotonic() - start
        return sum(1 for a in arrivals if a <= now)

    try:
        async with httpx.AsyncClient(limits=limits) as client:
            task = asyncio.create_task(sampler())
            await asyncio.gather(*(one(float(a), rng.choice(prompts), i) for i, a in enumerate(arrivals)))
            task.cancel()
        for rec, fut in scoring:
            try:
                rec.scorable, rec.exact_score = await fut
            except Exception as e:  # a scorer bug must not lose the replay's records
                rec.error = f"scoring failed: {type(e).__name__}: {e}"[:200]
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    if progress and tty:
        print(file=sys.stderr)
    records.sort(key=lambda r: r.t_sent)
    return records, samples


def records_to_json(records: list[Record], samples: list[Sample]) -> dict:
    """Raw records and samples as plain data."""
    return {"records": [asdict(r) for r in records], "allocation": [asdict(s) for s in samples]}
