"""Workloads: request-arrival traces and prompt sets, loaded and scaled for open-loop replay.

Pure functions over arrays (no I/O except the explicit loaders). Traces are real LLM
request logs (e.g. Mooncake's conversation trace, JSONL with a millisecond `timestamp`, or Azure's
LLM inference trace, CSV with `TIMESTAMP`) used only for their arrival times; they are
replayed with their inter-arrival pattern kept and time/rate scaled to the system.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np

from argus.sim.trace import TraceError, read_timestamps


class WorkloadError(ValueError):
    """A trace or prompt file is unusable; the message names the file and the problem."""


def read_arrivals(path: Path) -> np.ndarray:
    """Arrival times in seconds from the first request, sorted, from a CSV (TIMESTAMP) or JSONL (timestamp ms).

    The file is read by the simulator's reader (argus.sim.trace), so both parse traces the same way.
    """
    try:
        ts = read_timestamps(path)
    except TraceError as e:
        raise WorkloadError(str(e)) from None
    if not len(ts):
        raise WorkloadError(f"{path}: trace is empty")
    arr = np.sort(np.asarray(ts, dtype=float))
    return arr - arr[0]


def scale_trace(arrivals: np.ndarray, *, mean_rate: float, duration: float, offset: float = 0.0) -> np.ndarray:
    """Keep the trace's shape: take a window, stretch time so the mean rate is `mean_rate`, cut at `duration`.

    The window starts at `offset` seconds of the original trace; the original's mean rate
    decides the stretch factor, so bursts stay bursts.
    """
    if mean_rate <= 0 or duration <= 0:
        raise WorkloadError("mean_rate and duration must be positive")
    a = arrivals[arrivals >= offset] - offset
    if len(a) < 2:
        raise WorkloadError("trace window has fewer than 2 requests")
    orig_rate = len(a) / max(a[-1], 1e-9)
    factor = orig_rate / mean_rate  # seconds of replay per second of trace
    out = a * factor
    return out[out < duration]


def bursty_arrivals(*, base_rate: float, peak_rate: float, duration: float, peak_start: float,
                    peak_len: float, seed: int = 0) -> np.ndarray:
    """Poisson arrivals at `base_rate` with one plateau at `peak_rate` (the paper's bursty shape).

    A gap drawn at one rate that would cross a change of rate ends at the change, and the next is drawn at
    the new rate (exponential gaps are memoryless): an off-peak gap never runs into the plateau."""
    rng = np.random.default_rng(seed)
    out, t = [], 0.0
    end = peak_start + peak_len
    while True:
        rate = peak_rate if peak_start <= t < end else base_rate
        edge = peak_start if t < peak_start else (end if t < end else duration)
        gap = rng.exponential(1.0 / rate)
        if t + gap >= edge and edge < duration:
            t = edge
            continue
        t += gap
        if t >= duration:
            return np.asarray(out)
        out.append(t)


def read_prompts(path: Path | None = None, limit: int | None = None) -> list[str]:
    """Prompts, one per line (or a .tsv with a Prompt column); default: the shipped DiffusionDB subset."""
    if path is None:
        text = resources.files("argus.data").joinpath("prompts/diffusiondb_300.txt").read_text(encoding="utf-8")
        lines = text.splitlines()
    else:
        path = Path(path)
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise WorkloadError(f"{path}: {e}") from None
        if path.suffix == ".tsv":
            rows = list(csv.DictReader(raw.splitlines(), delimiter="\t"))
            if not rows or "Prompt" not in rows[0]:
                raise WorkloadError(f"{path}: TSV needs a Prompt column")
            lines = [r["Prompt"] for r in rows]
        else:
            lines = raw.splitlines()
    prompts = [p.strip() for p in lines if p.strip()]
    if not prompts:
        raise WorkloadError(f"{path or 'built-in prompts'}: no prompts")
    return prompts[:limit] if limit else prompts
