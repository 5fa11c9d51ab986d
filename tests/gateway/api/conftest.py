"""API tests use the fixtures of ``tests/gateway/conftest.py``; names re-exported for imports."""

from tests.gateway.conftest import CONTACT, FAX_A, MOBILE_A, MOBILE_B, Seed, auth

__all__ = ["CONTACT", "FAX_A", "MOBILE_A", "MOBILE_B", "Seed", "auth"]
