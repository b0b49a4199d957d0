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


@dataclass
class Sample:
    """The allocation (replicas per level) at one moment of the replay."""

    t: float
    allocation: dict
    overload: bool | None = None  # the control loop's last plan declared overload
    degraded: bool | None = None  # the control loop reported Degraded (e.g. no metrics)


async def replay(url: str, arrivals, prompts: list[str], *, size: str, timeout_s: float, seed: int = 0,
                 state_file: Path | None = None, api_key: str | None = None,
                 progress: bool = True) -> tuple[list[Record], list[Sample]]:
    """Send one request per arrival time (seconds), prompts drawn at random; return records and allocation samples."""
    rng = random.Random(seed)
    records: list[Record] = []
    samples: list[Sample] = []
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    start = time.monotonic()
    total = len(arrivals)

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
                rep = r.json()["argus"][0]
                records.append(Record(t0 - start, lat, 200, rep.get("level"), rep.get("optimal_level"),
                                      rep.get("predicted_quality"), rep.get("cache_hit"), retries=rep.get("retries"),
                                      replica=rep.get("replica")))
            else:
                records.append(Record(t0 - start, lat, r.status_code, error=r.text[:200]))
        except httpx.HTTPError as e:
            records.append(Record(t0 - start, time.monotonic() - t0, 0, error=type(e).__name__))

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

    async with httpx.AsyncClient(limits=limits) as client:
        task = asyncio.create_task(sampler())
        await asyncio.gather(*(one(float(a), rng.choice(prompts), i) for i, a in enumerate(arrivals)))
        task.cancel()
    if progress and tty:
        print(file=sys.stderr)
    records.sort(key=lambda r: r.t_sent)
    return records, samples


def records_to_json(records: list[Record], samples: list[Sample]) -> dict:
    """Raw records and samples as plain data."""
    return {"records": [asdict(r) for r in records], "allocation": [asdict(s) for s in samples]}
