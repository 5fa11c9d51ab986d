"""``[portal]`` is parsed by the portal extension; errors name the key."""

from __future__ import annotations

import pytest

from gateway.config import parse_settings
from gateway.errors import ConfigError
from gateway.portal.settings import PortalSettings, TemplateOffer


def test_defaults_and_values() -> None:
    assert parse_settings({}).extension("portal", PortalSettings) == PortalSettings()
    s = parse_settings(
        {
            "portal": {
                "session_idle_hours": 2,
                "signin_account_limit": 3,
                "templates": [{"name": "hello_world", "language": "en_US", "label": "Hello"}],
            }
        }
    ).extension("portal", PortalSettings)
    assert s.session_idle_hours == 2.0 and s.signin_account_limit == 3
    assert s.templates == (TemplateOffer("hello_world", "en_US", "Hello"),)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"nope": 1}, "portal.nope: unknown key"),
        ({"enabled": "yes"}, "portal.enabled: expected true or false"),
        ({"page_size": 1}, "portal.page_size: must be from 5 to 200"),
        ({"signin_account_limit": 2.5}, "portal.signin_account_limit: expected a int"),
        ({"templates": [{"name": "Bad Name", "language": "de"}]}, "portal.templates[0].name"),
        ({"templates": [{"name": "ok", "language": "deutsch"}]}, "portal.templates[0].language"),
        ({"templates": {"name": "ok"}}, "portal.templates: expected an array"),
    ],
)
def test_errors_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings({"portal": table})
    assert message in str(err.value)
