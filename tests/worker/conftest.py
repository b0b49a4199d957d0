"""Shared fixtures of the worker tests: one tiny pipeline per session (building it costs seconds)."""

from __future__ import annotations

import pytest

N = 6  # steps of the full schedule in these tests


@pytest.fixture(scope="session")
def pipeline():
    """The seeded tiny model with N=6 steps, single-threaded (the test machine is shared)."""
    import torch

    from argus.worker.pipeline import DiffusionPipeline, PipelineSettings

    threads = torch.get_num_threads()
    # Many processes share two cores here: OpenMP spinning across busy cores is far slower than one thread.
    torch.set_num_threads(1)
    try:
        yield DiffusionPipeline(PipelineSettings(steps=N))
    finally:
        torch.set_num_threads(threads)
