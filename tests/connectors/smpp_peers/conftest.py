"""Fixtures: the independent SMSCs as child processes on free loopback ports."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.connectors.smpp_peers.peers import KINDS, SmscPeer


@pytest.fixture
def peer_dir() -> Iterator[Path]:
    """A scratch directory for journals and logs."""
    path = Path(tempfile.mkdtemp(prefix="gw-smsc-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def node_smsc(peer_dir: Path) -> Iterator[SmscPeer]:
    """The node-smpp SMSC (authenticates system_id ``gateway`` / password ``secret``)."""
    peer = SmscPeer("node", peer_dir)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def smpp34_smsc(peer_dir: Path) -> Iterator[SmscPeer]:
    """The smpp34 SMSC (accepts any credentials)."""
    peer = SmscPeer("smpp34", peer_dir)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(params=KINDS)
def smsc(request: pytest.FixtureRequest, peer_dir: Path) -> Iterator[SmscPeer]:
    """Each independent SMSC in turn."""
    peer = SmscPeer(str(request.param), peer_dir)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()
