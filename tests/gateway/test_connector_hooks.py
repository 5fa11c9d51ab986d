"""The core's side of the connector seams: meta merged one level deep, the inbound fax
policy (blocked callers, an allowed list), as the sip_t38 connector uses them."""

from __future__ import annotations

import pytest

from gateway.connector_hooks import merged
from gateway.destinations import Policy, PolicyError, parse_fields


def test_meta_is_merged_one_level_deep() -> None:
    old = {"fax": {"tiff": "att_1", "pages": 3}, "cover": {"a": 1}}
    new = {"fax": {"pages_sent": 1}, "other": 2}
    assert merged(old, new) == {"fax": {"tiff": "att_1", "pages": 3, "pages_sent": 1},
                                "cover": {"a": 1}, "other": 2}


def test_inbound_fax_lists() -> None:
    values = parse_fields({"inbound_fax_blocked": ["040 111222"]}, "DE")
    assert values == {"inbound_fax_blocked": ["+4940111222"]}
    blocked = Policy.build(Policy(), values)
    assert blocked.inbound_fax_refused("+4940111222")
    assert not blocked.inbound_fax_refused("+4940111223")
    allowed = Policy.build(Policy(), parse_fields({"inbound_fax_allowed": ["+4989"]}, "DE"))
    assert not allowed.inbound_fax_refused("+49891234")
    assert allowed.inbound_fax_refused("+4930123") and allowed.inbound_fax_refused("anonymous")
    assert not Policy().inbound_fax_refused("+4930123")
    assert allowed.doc()["inbound_fax_allowed"] == ["+4989"]


def test_a_bad_inbound_fax_prefix_names_the_field() -> None:
    with pytest.raises(PolicyError) as err:
        parse_fields({"inbound_fax_blocked": ["abc"]}, "DE")
    assert err.value.field == "inbound_fax_blocked"
