"""An async micro-batcher: concurrent single-item calls become one call of a batch function.

Used for the encoder (one forward pass for many prompts) and for the planner (one matrix product
over the index for many queries, since a brute-force search is bound by reading the rows).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Collects `submit` calls for up to `max_wait_s` (or `max_batch` items) and runs `fn` once on them.

    `fn` runs in `executor` (default: the loop's), one batch at a time, so the event loop keeps
    serving meanwhile; an exception from `fn` goes to every caller of that batch.
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_batch: int = 32, max_wait_s: float = 0.002,
                 executor: Executor | None = None):
        """Batch calls to `fn`; `max_wait_s` bounds the latency added to a lone call."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.executor = executor
        self._pending: list[tuple[T, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self._lock: asyncio.Lock | None = None
        self.batches: list[int] = []  # sizes of the batches run, newest last (bounded)

    async def submit(self, item: T) -> R:
        """The result of `fn` for one item, computed together with any concurrent calls."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._pending.append((item, fut))
        if len(self._pending) >= self.max_batch:
            self._flusher = loop.create_task(self._flush(0.0))
        elif self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(self.max_wait_s))
        return await fut

    async def _flush(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one batch at a time: encoders are not re-entrant
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                batch = [(x, f) for x, f in batch if not f.done()]
                if not batch:
                    continue
                loop = asyncio.get_running_loop()
                try:
                    out = await loop.run_in_executor(self.executor, self.fn, [x for x, _ in batch])
                except Exception as e:
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(e)
                    continue
                self.batches = (self.batches + [len(batch)])[-1000:]
                for (_, f), r in zip(batch, out):
                    if not f.done():
                        f.set_result(r)
