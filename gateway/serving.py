"""One way to run an ASGI app under uvicorn: ``gateway serve`` and ``demo``, the carrier
simulators, tests and benchmarks all use this module.

Public: connectors (their simulators) and extensions may import it.

uvicorn's own signal capture is switched off everywhere: it re-raises SIGTERM after
``serve`` returns, which would end the process before the runtime is closed, and an app
served in a task of a larger program must not take its signals. :func:`serve_until_signal`
installs handlers of its own; :func:`serving` runs the server in a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp

Lifespan = Literal["auto", "on", "off"]
START_TIMEOUT = 10.0  # seconds a server may take to listen


class Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its caller."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Do not touch signal handlers."""
        yield


def config(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    lifespan: Lifespan = "off",
    log_level: str = "warning",
    **options: Any,
) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` on ``host:port`` (0: a free port); ``options``
    are more of ``uvicorn.Config``'s."""
    return uvicorn.Config(
        app, host=host, port=port, lifespan=lifespan, log_level=log_level, **options
    )


@contextlib.contextmanager
def on_signals(callback: Callable[[int], None]) -> Iterator[None]:
    """Call ``callback(signum)`` on SIGINT/SIGTERM while the block runs."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, callback, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def serve_until_signal(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    lifespan: Lifespan = "on",
    log_level: str = "info",
    **options: Any,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (a second SIGINT: without waiting for open
    connections), then return (the caller closes what it opened)."""
    server = Server(config(app, host, port, lifespan=lifespan, log_level=log_level, **options))

    def stop(sig: int) -> None:
        if server.should_exit and sig == signal.SIGINT:
            server.force_exit = True  # a second Ctrl-C: do not wait for open connections
        server.should_exit = True

    with on_signals(stop):
        await server.serve()


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    lifespan: Lifespan = "off",
    **options: Any,
) -> AsyncIterator[str]:
    """Serve ``app`` in a task while the block runs (no access log, no websockets unless
    ``options`` say otherwise); yields its base URL (port 0: a free port). Raises
    ``RuntimeError`` when the server cannot start."""
    options = {"access_log": False, "ws": "none", **options}
    server = Server(config(app, host, port, lifespan=lifespan, **options))

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit as exc:
            # uvicorn exits the process when it cannot bind or start; a SystemExit
            # escaping a task would stop the caller's event loop.
            raise RuntimeError(f"uvicorn could not start on {host}:{port}") from exc

    task = asyncio.create_task(serve(), name=f"uvicorn-{host}:{port}")
    try:
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while not server.started and not task.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise RuntimeError(f"uvicorn did not start on {host}:{port} within 10 s") from None
        if not server.started:
            task.result()  # raises why it stopped
            raise RuntimeError(f"uvicorn stopped before it listened on {host}:{port}")
        bound = server.servers[0].sockets[0].getsockname()[1]
        display = f"[{host}]" if ":" in host else host
        yield f"http://{display}:{bound}"
    finally:
        server.should_exit = True
        with contextlib.suppress(RuntimeError):  # a failed start was raised above
            await task
