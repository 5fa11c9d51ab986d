"""A sandbox (zygote process) shared by a test module, stopped at its end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fax.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(slots=2)
    box.start()
    yield box
    box.close()


# The API fixtures (a runtime with the fake connectors, a seeded team, an in-process
# client) for the tests of the fax API, email-to-fax and fax-to-email.
from tests.gateway.conftest import client, rt, seed  # noqa: E402, F401

# The provider's relay (``[smtp]``) for the mail the gateway sends: aiosmtpd on loopback.
from tests.gateway.test_mail import smtp_server  # noqa: E402, F401
