"""A real gateway (uvicorn, workers, the portal) in a thread, and Debian's chromium driven
by Playwright, for the portal's browser tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import socket
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from gateway.api.app import create_app
from gateway.config import ConnectorConfig, parse_settings
from gateway.demo import DemoInfo
from gateway.portal.settings import PortalSettings
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.gateway.conftest import fake_connectors

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).parents[3] / "gateway/portal/npm/node_modules/axe-core/axe.min.js"
# Where the screenshots of the main pages are kept (printed at the end of the run).
SCREENSHOTS = Path(
    os.environ.get("PORTAL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "portal-screenshots"
)


class LiveServer:
    """``gateway serve`` in a thread: uvicorn on a pre-bound loopback socket, the job
    workers and the portal's event tail running; ``call`` runs a coroutine in its loop."""

    def __init__(
        self,
        workdir: Path,
        store: str | None = None,
        portal: PortalSettings | None = None,
        connectors: tuple[ConnectorConfig, ...] = (),
        **settings: Any,
    ) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        base = parse_settings(
            {
                "gateway": {
                    "store": store or f"sqlite:///{workdir}/gateway.db",
                    "blobs": str(workdir / "blobs"),
                }
            }
        )
        self.settings = dataclasses.replace(
            base,
            connectors=(*connectors, *fake_connectors()),
            public_url=self.url,
            poll_interval=0.05,
            **settings,
        )
        if portal is not None:
            self.settings = self.settings.with_extension("portal", portal)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.rt: Runtime | None = None
        self.server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="portal-live-server", daemon=True)

    def start(self) -> LiveServer:
        """Start and wait until it serves."""
        self.thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the live server did not start: {self._error!r}")
        return self

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self.rt = await open_runtime(self.settings)
        try:
            await self.rt.wait_started()
            app = create_app(self.rt, workers=True)
            config = uvicorn.Config(
                app, lifespan="on", log_level="warning", timeout_graceful_shutdown=2
            )
            self.server = uvicorn.Server(config)
            serving = asyncio.create_task(self.server.serve(sockets=[self.sock]))
            # uvicorn only says it listens through its ``started`` flag.
            while not self.server.started and not serving.done():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            self._ready.set()
            await serving
        finally:
            await self.rt.aclose()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in the server's loop (its store and runtime live there)."""
        assert self.loop is not None
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        """Stop serving: the open event streams end first, then uvicorn."""
        if self.loop is not None and self.rt is not None and self.loop.is_running():
            from gateway.portal.web import portal_for

            async def end_streams() -> None:
                await (await portal_for(self.rt)).hub.stop()  # type: ignore[arg-type]

            asyncio.run_coroutine_threadsafe(end_streams(), self.loop).result(10)
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@contextlib.contextmanager
def demo_gateway(workdir: Path) -> Iterator[tuple[LiveServer, DemoInfo]]:
    """A live gateway set up like ``gateway demo``: its team, members and key. Webhooks
    go to loopback addresses (as in the demo) but their first attempt is a day away:
    nothing is delivered, whatever URLs a test registers."""
    from gateway.demo import create_demo
    from webhooks.settings import WebhookSettings

    server = LiveServer(workdir)
    hooks = WebhookSettings(allow_private_targets=True, retry_schedule=(86400.0,))
    server.settings = server.settings.with_extension("webhooks", hooks)
    server.start()
    try:
        assert server.loop is not None and server.rt is not None
        rt = server.rt
        info = asyncio.run_coroutine_threadsafe(
            create_demo(rt.store, rt.clock, rt.settings), server.loop
        ).result(30)
        yield server, info
    finally:
        server.stop()
