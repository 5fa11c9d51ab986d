"""The import rules of the house (DESIGN.md, "Direction of imports"), checked on the
source: every ``import`` statement counts, at module level, inside functions and under
``TYPE_CHECKING`` alike (an import moved into a function to dodge a circle is still a
circle).

- the core (``gateway``) imports no concrete connector (only ``connectors.base``, the
  seam), nor ``fax`` nor ``webhooks``: it finds them through entry points and registries;
- ``connectors``, ``fax`` and ``webhooks`` import only the core's public modules
  (:data:`PUBLIC_CORE`, the one list of them);
- no package of the product imports ``tests`` or ``bench``;
- no circles anywhere in the module graph of the product.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "connectors", "fax", "webhooks")
# The core's public modules: what connectors, fax and extensions may import. A module
# joins on purpose, with a docstring line saying it is public.
PUBLIC_CORE = frozenset(
    {
        "gateway",  # the package itself: __version__
        "gateway.api.helpers",  # API helpers shared by the core's and extensions' routes
        "gateway.api.openapi_kit",  # the building blocks of an extension's OpenAPI section
        "gateway.auth",  # Principal, KeyCache
        "gateway.blobs",
        "gateway.clock",
        "gateway.commands",
        "gateway.coordination",  # what processes sharing a store agree on (connectors)
        "gateway.config",  # ConnectorConfig, Settings, typed (extensions' section parsers)
        "gateway.errors",
        "gateway.events",  # the event types of the event log
        "gateway.extensions",  # the Extension and Host protocols
        "gateway.ids",
        "gateway.jsoncodec",
        "gateway.mail",  # send_mail through the [smtp] relay (fax-to-email, status mails)
        "gateway.metrics",
        "gateway.models",
        "gateway.numbers",
        "gateway.outbound",  # draft/submit: the one outbound path, for front doors (email-to-fax)
        "gateway.retention",  # drain: extensions prune their own logs in small batches
        "gateway.retry",
        "gateway.serving",  # the one way to run uvicorn
        "gateway.services",  # what one extension offers another (WebhookAdmin, DocumentPreview)
        "gateway.store.base",
        "gateway.store.event_waiters",  # waiting on the event log (the webhook fan-out)
        # Storage roles (webhooks/, the portal): the mechanism and the backend access it hands
        # to a role's implementations.
        "gateway.store.redis_backend",
        "gateway.store.roles",
        "gateway.store.sqlite_engine",
        "gateway.units",
    }
)
# What the core may import of the connectors: the seam, never a carrier.
CONNECTOR_SEAM = frozenset({"connectors", "connectors.base"})
OUTSIDE = ("tests", "bench")

Graph = dict[str, set[str]]


def modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``, by dotted name (a package by its own)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, str]]:
    """What one import statement reaches: ``(name, its module)`` per imported name (for
    ``from a import b``: ``a.b``, which may be a module itself, and ``a``)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, alias.name
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            yield f"{base}.{alias.name}", base


def _resolve(name: str, module: str, known: Mapping[str, Path]) -> str:
    """The module an import reaches: ``name`` if it is one of ``known``, else the longest
    known prefix of ``module``; outside the product, ``module`` as written."""
    if name in known:
        return name
    found = module
    while found not in known and "." in found:
        found = found.rpartition(".")[0]
    return found if found in known else module


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> Graph:
    """Module → the modules it imports (of every package, the product's and others')."""
    known = modules(root, packages)
    graph: Graph = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges = {
            _resolve(target, module, known)
            for node in ast.walk(tree)
            for target, module in _imported(node, name, path.name == "__init__.py")
        }
        edges.discard(name)
        graph[name] = edges
    return graph


def _package(name: str) -> str:
    return name.partition(".")[0]


def violations(graph: Mapping[str, set[str]]) -> list[str]:
    """Every broken direction rule, one line each."""
    found = []
    for module, edges in sorted(graph.items()):
        for target in sorted(edges):
            top = _package(target)
            if top in OUTSIDE:
                found.append(f"{module} imports {target}: nothing imports tests or bench")
            elif _package(module) == "gateway":
                if top == "connectors" and target not in CONNECTOR_SEAM:
                    found.append(f"{module} imports {target}: the core imports no carrier")
                elif top in ("fax", "webhooks"):
                    found.append(f"{module} imports {target}: the core imports no {top}")
            elif top == "gateway" and target not in PUBLIC_CORE:
                found.append(f"{module} imports {target}: not a public core module")
    return found


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected groups of modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue  # outside the product
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


# -- the product ---------------------------------------------------------------------------
def test_the_product_follows_the_direction_of_imports() -> None:
    assert violations(import_graph(ROOT)) == []


def test_the_product_has_no_import_circles() -> None:
    assert circles(import_graph(ROOT)) == []


# -- the checker itself, on trees that break each rule --------------------------------------
def write(root: Path, files: Mapping[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")


BASE = {
    "gateway/__init__.py": "",
    "gateway/models.py": "",
    "gateway/runtime.py": "from gateway import models\n",
    "gateway/store/__init__.py": "",
    "gateway/store/base.py": "from ..models import Job\n",
    "connectors/__init__.py": "",
    "connectors/base.py": "from gateway.models import Job\n",
    "connectors/smpp/__init__.py": "",
    "connectors/smpp/connector.py": "from connectors import base\nfrom . import pdu\n",
    "connectors/smpp/pdu.py": "import struct\n",
    "webhooks/__init__.py": "",
    "webhooks/api.py": "from gateway.store.base import Job\n",
    "fax/__init__.py": "",
}


def test_the_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    graph = import_graph(tmp_path)
    assert graph["connectors.smpp.connector"] == {"connectors.base", "connectors.smpp.pdu"}
    assert graph["gateway.store.base"] == {"gateway.models"}
    assert violations(graph) == [] and circles(graph) == []


def test_the_checker_finds_each_broken_rule(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            **BASE,
            # The core reaching a carrier, at function level; and webhooks.
            "gateway/demo.py": "def f():\n    from connectors.smpp import pdu\n",
            "gateway/api.py": "import webhooks.api\n",
            # A connector and an extension reaching past the public core.
            "connectors/smpp/pdu.py": "from gateway.runtime import Runtime\n",
            "webhooks/api.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from gateway import runtime\n",
            "fax/render.py": "from tests.conftest import free_port\n",
        },
    )
    assert violations(import_graph(tmp_path)) == [
        "connectors.smpp.pdu imports gateway.runtime: not a public core module",
        "fax.render imports tests.conftest: nothing imports tests or bench",
        "gateway.api imports webhooks.api: the core imports no webhooks",
        "gateway.demo imports connectors.smpp.pdu: the core imports no carrier",
        "webhooks.api imports gateway.runtime: not a public core module",
    ]


def test_the_checker_finds_circles_however_they_hide(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            **BASE,
            "gateway/jobs.py": "from gateway.runtime import Runtime\n",
            # Only inside a function: still a circle.
            "gateway/models.py": "def f():\n    from gateway import jobs\n",
            "connectors/smpp/smsc.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from .simulator import Sim\n",
            "connectors/smpp/simulator.py": "from connectors.smpp.smsc import Conn\n",
        },
    )
    assert circles(import_graph(tmp_path)) == [
        ["connectors.smpp.simulator", "connectors.smpp.smsc"],
        ["gateway.jobs", "gateway.models", "gateway.runtime"],
    ]
