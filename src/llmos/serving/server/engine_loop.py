"""The engine loop: one thread that owns an ``LLMEngine`` and bridges it to asyncio.

The engine is single-threaded and never blocks on I/O, so exactly one thread
(this loop) ever touches it. Coroutines talk to it through a thread-safe inbox
of commands; the loop hands each :class:`RequestOutput` back to the event loop
of the coroutine that asked, with ``call_soon_threadsafe``.

Contract:

* :meth:`EngineLoop.generate` is an async iterator of outputs for one request;
  the last one has ``finished=True``. Leaving the iteration early (client gone,
  task cancelled) aborts the request in the engine.
* A fault of ``add_request`` (bad prompt, unknown adapter) is raised from the
  first ``__anext__``, so the HTTP layer can still answer 4xx before streaming.
* :meth:`EngineLoop.call` runs a function on the engine thread between steps
  (LoRA load/unload, listing) and returns its result or raises its error.
* A fault inside ``step()`` fails every in-flight request with that error; the
  loop keeps running so later requests are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from llmos.errors import LLMOSError

log = logging.getLogger(__name__)

_ids = itertools.count()


@dataclass
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any]


@dataclass(frozen=True)
class EngineSnapshot:
    """Figures the engine thread publishes after each step, for metrics and health."""

    num_running: int = 0
    num_waiting: int = 0
    kv_cache_usage: float = 0.0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    num_preemptions: int = 0


class EngineLoopStopped(LLMOSError):
    """The engine loop was stopped (model unloaded) while a request was using it."""

    code = "model_unloaded"
    http_status = 503


class EngineLoop:
    """Runs ``engine.step()`` on a dedicated thread while there is work.

    Thread-safety: every public method may be called from any thread or event
    loop; only the loop thread calls into the engine.
    """

    def __init__(self, engine: Any, name: str, idle_wait_s: float = 0.05) -> None:
        self.engine = engine
        self.name = name
        self._idle_wait_s = idle_wait_s
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._streams: dict[str, _Stream] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"engine-{name}", daemon=True)
        self.snapshot = EngineSnapshot()
        self.in_flight = 0  # touched only from event-loop threads, under _count_lock
        self._count_lock = threading.Lock()

    # lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop; in-flight requests end with :class:`EngineLoopStopped`. Idempotent."""
        self._stop.set()
        self._inbox.put(("wake", None))
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    # async API ---------------------------------------------------------------
    async def generate(
        self,
        prompt: str | list[int],
        params: Any,
        lora_name: str | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[Any]:
        """Submit one request and yield its outputs until the finished one."""
        if not self.alive:
            raise EngineLoopStopped(f"model {self.name} is not running")
        rid = request_id or f"req-{next(_ids)}"
        q: asyncio.Queue[Any] = asyncio.Queue()
        self._inbox.put(("add", (rid, prompt, params, lora_name, _Stream(asyncio.get_running_loop(), q))))
        with self._count_lock:
            self.in_flight += 1
        finished = False
        try:
            while True:
                item = await q.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                if item.finished:
                    finished = True
                yield item
                if finished:
                    return
        finally:
            with self._count_lock:
                self.in_flight -= 1
            if not finished:
                self._inbox.put(("abort", rid))

    async def call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(engine)`` on the engine thread; return its result or raise its error."""
        if not self.alive:
            raise EngineLoopStopped(f"model {self.name} is not running")
        fut: Future[Any] = Future()
        self._inbox.put(("call", (fn, fut)))
        return await asyncio.wrap_future(fut)

    # engine thread ----------------------------------------------------------
    def _deliver(self, rid: str, item: Any) -> None:
        stream = self._streams.get(rid)
        if stream is None:
            return
        if isinstance(item, BaseException) or item.finished:
            del self._streams[rid]
        # RuntimeError: the caller's event loop is closed, nobody listens any more.
        with contextlib.suppress(RuntimeError):
            stream.loop.call_soon_threadsafe(stream.queue.put_nowait, item)

    def _handle(self, cmd: str, arg: Any) -> None:
        if cmd == "add":
            rid, prompt, params, lora_name, stream = arg
            self._streams[rid] = stream
            try:
                self.engine.add_request(rid, prompt, params, lora_name=lora_name)
            except Exception as e:
                self._deliver(rid, e)
        elif cmd == "abort":
            self._streams.pop(arg, None)
            try:
                self.engine.abort(arg)
            except Exception:
                # Aborting a request that already finished is not a fault.
                log.debug("abort of %s failed", arg, exc_info=True)
        elif cmd == "call":
            fn, fut = arg
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(self.engine))
                except BaseException as e:
                    fut.set_exception(e)

    def _publish_stats(self) -> None:
        try:
            s = self.engine.stats()
        except Exception:
            return
        self.snapshot = EngineSnapshot(
            num_running=int(getattr(s, "num_running", 0)),
            num_waiting=int(getattr(s, "num_waiting", 0)),
            kv_cache_usage=float(getattr(s, "kv_cache_usage", 0.0)),
            prefix_cache_queries=int(getattr(s, "prefix_cache_queries", 0)),
            prefix_cache_hits=int(getattr(s, "prefix_cache_hits", 0)),
            num_preemptions=int(getattr(s, "num_preemptions", 0)),
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = self.engine.has_unfinished()
            try:
                # Block only when idle; while busy, drain whatever arrived between steps.
                cmd, arg = (
                    self._inbox.get(timeout=self._idle_wait_s) if not busy else self._inbox.get_nowait()
                )
                self._handle(cmd, arg)
                continue
            except queue.Empty:
                pass
            if not self.engine.has_unfinished():
                self._publish_stats()
                continue
            try:
                outputs = self.engine.step()
            except Exception as e:
                log.exception("engine step failed; failing %d requests", len(self._streams))
                for rid in list(self._streams):
                    with contextlib.suppress(Exception):
                        self.engine.abort(rid)
                    self._deliver(rid, e)
                continue
            for out in outputs:
                self._deliver(out.request_id, out)
            self._publish_stats()
        self._shutdown()

    def _shutdown(self) -> None:
        err = EngineLoopStopped(f"model {self.name} was unloaded")
        for rid in list(self._streams):
            self._deliver(rid, err)
        while True:
            try:
                cmd, arg = self._inbox.get_nowait()
            except queue.Empty:
                break
            if cmd == "add":
                arg[4].loop.call_soon_threadsafe(arg[4].queue.put_nowait, err)
            elif cmd == "call" and arg[1].set_running_or_notify_cancel():
                arg[1].set_exception(err)
