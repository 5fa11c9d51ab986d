"""The provider's relay for the mail the gateway sends: aiosmtpd on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.test_mail import SmtpServer


@pytest.fixture
def relay() -> Iterator[SmtpServer]:
    """The ``[smtp]`` relay's stand-in, recording what it is given."""
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()
