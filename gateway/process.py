"""One gateway process, assembled: the runtime with the core's inbound path as its
connectors' sink and the installed extensions' storage roles open, and job workers with
every kind this process runs.

The seams meet here and nowhere else: the core's job kinds (``send`` and ``status`` from
``dispatch``, ``forward`` from ``forwarding``), the kinds of the configured connectors
(``Connector.job_handlers``) and of the installed extensions
(``Extension.job_handlers(host)``), the core's housekeeping, and the extensions'
background services. Nothing registers itself by being imported.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from gateway import dispatch, forwarding, retention
from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.extensions import extensions
from gateway.inbound import Inbound
from gateway.jobs import Service, Worker
from gateway.models import JobHandler
from gateway.runtime import Runtime


async def open_runtime(settings: Settings, **options: Any) -> Runtime:
    """``Runtime.create`` with the core's inbound path (``gateway.inbound``) as the sink
    of every connector and the storage roles of the installed extensions
    (``Extension.storage``) opened on its store; ``options``: ``clock``, ``http``,
    ``start_connectors``, ``sends``."""
    roles = [role for ext in extensions() for role in ext.storage()]
    return await Runtime.create(settings, Inbound, roles=roles, **options)


def job_handlers(rt: Runtime) -> dict[str, JobHandler]:
    """Every job kind this process runs, bound to ``rt``: the core's, the configured
    connectors' and the installed extensions'. A kind claimed twice is a configuration
    error (two packages would each think the job is theirs)."""
    handlers = {**dispatch.job_handlers(rt), **forwarding.job_handlers(rt)}
    sources: list[tuple[str, Mapping[str, JobHandler]]] = [("connectors", rt.job_handlers())]
    sources += [(f"extension {ext.name}", ext.job_handlers(rt)) for ext in extensions()]
    for source, declared in sources:
        taken = sorted(set(declared) & set(handlers))
        if taken:
            raise ConfigError(f"{source}: job kind(s) {', '.join(taken)} already handled")
        handlers.update(declared)
    return handlers


def services(rt: Runtime) -> dict[str, Service]:
    """The extensions' background services bound to ``rt``, by extension name."""
    return {ext.name: functools.partial(ext.run, rt) for ext in extensions()}


def worker(
    rt: Runtime,
    *,
    extra: Mapping[str, JobHandler] | None = None,
    concurrency: int | None = None,
    name: str | None = None,
) -> Worker:
    """The job worker of this process: every kind of :func:`job_handlers` (and
    ``extra`` ones, for tests and embedding), the core's housekeeping and the extensions'
    services."""
    return Worker(
        rt,
        {**job_handlers(rt), **(extra or {})},
        housekeeping=[*dispatch.housekeeping(rt), *retention.housekeeping(rt)],
        services=services(rt),
        concurrency=concurrency,
        name=name,
    )
