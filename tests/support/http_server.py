"""Serve an app over real HTTP (uvicorn, lifespan included) from a thread of the test process, so
that synchronous clients (schemathesis, requests) can call it while the test still reaches the
app's runtime (to add users and keys with `tests.support.apps`)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from tests.support.servers import free_port

T = TypeVar("T")
START_TIMEOUT_S = 60.0  # migrations and the demo hierarchy are built on first start
STOP_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0


@dataclass
class ServedApp:
    """An app answering at `url`, its event loop running in another thread."""

    app: FastAPI
    url: str
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop (where the app's runtime lives) and wait for it."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(CALL_TIMEOUT_S)


@contextmanager
def served(app: FastAPI, port: int | None = None) -> Iterator[ServedApp]:
    """Start `app` on 127.0.0.1 (a free port unless given); stop it and wait on leaving."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    loops: list[asyncio.AbstractEventLoop] = []
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            with asyncio.Runner() as runner:
                loops.append(runner.get_loop())
                runner.run(server.serve())
        except BaseException as exc:  # reported to the test thread below
            failures.append(exc)

    thread = threading.Thread(target=serve, name=f"http-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if failures or not thread.is_alive():
            raise AssertionError(f"the server on port {port} did not start: {failures!r}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise AssertionError(f"the server on port {port} did not start in {START_TIMEOUT_S} s")
        time.sleep(0.02)  # polling a flag another thread sets; there is no event to wait on
    try:
        yield ServedApp(app, f"http://127.0.0.1:{port}", loops[0])
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        assert not thread.is_alive(), f"the server on port {port} did not stop"
        assert not failures, f"the server on port {port} failed: {failures!r}"
