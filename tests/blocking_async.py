"""AsyncClient behind Client's blocking surface, so that one client test suite runs against both.

An event loop runs in a thread of its own; every call is scheduled on it and waited for,
and an AsyncJob is iterated one ``__anext__`` at a time. Nothing is reimplemented: each
method, event, result and error comes from the AsyncClient and its AsyncJob themselves.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar, cast

from priorviz_client import AsyncClient, AsyncJob, Client

T = TypeVar("T")
_END = object()
Connect = Callable[..., Client]
"""Opens a client: ``Client`` itself, or an ``AsyncClient`` behind the same blocking surface."""


class EventLoopThread:
    """An asyncio loop running in a daemon thread until the block ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="client-test-loop", daemon=True)

    def __enter__(self) -> EventLoopThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self.loop.shutdown_asyncgens())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Runs ``coroutine`` on the loop and waits for it; its exception is raised here."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


class Blocking:
    """An AsyncClient or AsyncJob whose coroutines, async iteration and async context are driven from sync code."""

    def __init__(self, loop: EventLoopThread, target: Any) -> None:
        self._loop = loop
        self._target = target

    @classmethod
    def create(cls, loop: EventLoopThread, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Blocking:
        """Builds the target on the loop (a grpc.aio channel belongs to the loop it was made in)."""
        return cls(loop, loop.run(_call(factory, args, kwargs)))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def blocking(*args: Any, **kwargs: Any) -> Any:
            result = self._loop.run(_call(attribute, args, kwargs))
            return Blocking(self._loop, result) if isinstance(result, AsyncJob) else result

        return blocking

    def __enter__(self) -> Blocking:
        self._loop.run(_call(self._target.__aenter__, (), {}))
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.run(_call(self._target.__aexit__, exc, {}))

    def __iter__(self) -> Iterator[Any]:
        """Like ``async for``; leaving the loop early closes the async iterator at once (``aclose``)."""
        events = self._target.__aiter__()
        try:
            while (event := self._loop.run(_next(events))) is not _END:
                yield event
        finally:
            self._loop.run(_call(events.aclose, (), {}))


async def _call(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Calls ``function`` on the loop, awaiting what it returns when that is awaitable."""
    result = function(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


async def _next(events: Any) -> Any:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return _END


def connections(kind: str) -> Iterator[Connect]:
    """``Client``, or (``kind`` "AsyncClient") a factory of AsyncClients driven through ``Blocking`` while in use."""
    if kind == "Client":
        yield Client
        return
    with EventLoopThread() as loop:
        # Blocking is no Client subclass, but it answers to every name of Client's surface.
        yield cast(Connect, lambda *args, **kwargs: Blocking.create(loop, AsyncClient, *args, **kwargs))
