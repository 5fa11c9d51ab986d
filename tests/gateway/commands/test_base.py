"""The command machinery: decoding and converting agree, faults are found in the API's
order, hidden fields stay out, and schemas come out as OpenAPI 3.1 wants them."""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, ClassVar, Literal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec import UNSET, Meta, UnsetType

from gateway.commands import Command, Fault, SendRequest, convert, decode, explain, schemas
from gateway.errors import BadRequest, GatewayError, ValidationError
from gateway.models import Channel
from tests.gateway.conftest import CONTACT, MOBILE_A


class Colour(enum.Enum):
    """Colours, in their own order."""

    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Inner(Command, kw_only=True):
    """A nested command."""

    name: Annotated[str, Meta(pattern="^[a-z]+$")]
    size: int = 1


class Outer(Command, kw_only=True):
    """A command for these tests."""

    __hidden__: ClassVar[frozenset[str]] = frozenset({"later"})

    first: str
    colour: Colour | None = None
    items: Annotated[list[int], Meta(max_length=2)] = []
    inner: Inner | None = None
    choice: Literal["a", "b"] | None = None
    later: str | UnsetType | None = UNSET


class InBodyOrder(Command, kw_only=True):
    """Faults looked for in the body's key order."""

    __body_order__: ClassVar[bool] = True

    a: int | UnsetType = UNSET
    b: int | UnsetType = UNSET


def refusal(body: bytes) -> tuple[str, str, Any]:
    with pytest.raises(GatewayError) as exc:
        decode(Outer, body)
    return exc.value.code, exc.value.detail, exc.value.extra.get("field")


def test_a_command_is_built_with_keywords_and_encodes_as_the_api_reads_it() -> None:
    request = SendRequest(channel=Channel.SMS, from_=MOBILE_A, to=CONTACT, text="hi")
    raw = msgspec.json.encode(request)
    assert json.loads(raw)["from"] == MOBILE_A
    again = decode(SendRequest, raw)
    assert again.from_ == request.from_ and again.text == "hi" and again.cover is UNSET
    with pytest.raises(TypeError):
        SendRequest("sms", "+4915112345671", "+4917612345678")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("body", "path", "kind", "names"),
    [
        ([], (), "type", ()),
        ({"zeta": 1, "first": 5, "alpha": 2}, (), "unknown", ("zeta", "alpha")),
        ({}, ("first",), "missing", ()),
        ({"first": None}, ("first",), "null", ()),
        ({"items": "x", "first": 5}, ("first",), "type", ()),  # in the command's order
        ({"first": "x", "colour": "pink"}, ("colour",), "value", ()),
        ({"first": "x", "items": [1, 2, 3]}, ("items",), "constraint", ()),
        ({"first": "x", "items": [1, "2"]}, ("items", 1), "type", ()),
        # Within a nested command: its unknown fields first, then its fields in order.
        ({"first": "x", "inner": {"name": "X", "q": 1}}, ("inner",), "unknown", ("q",)),
        ({"first": "x", "inner": {"size": "1", "name": "X"}}, ("inner", "name"), "constraint", ()),
        ({"first": "x", "inner": 5}, ("inner",), "type", ()),
        ({"first": "x", "later": None}, (), "unknown", ("later",)),
    ],
)
def test_explain_finds_the_first_fault_in_the_apis_order(
    body: Any, path: tuple[Any, ...], kind: str, names: tuple[str, ...]
) -> None:
    fault = explain(Outer, body)
    assert (fault.path, fault.kind, fault.names) == (path, kind, names)
    assert fault.text  # msgspec's own words, for refusals that have no others


def test_body_order_looks_at_unknown_fields_where_they_stand() -> None:
    assert explain(InBodyOrder, {"a": "x", "c": 1}).path == ("a",)
    assert explain(InBodyOrder, {"c": 1, "a": "x"}).names == ("c",)


def test_fault_where_and_value() -> None:
    fault = Fault(("template", "components", 2, "type"), "type", "")
    assert fault.where == "template.components[2].type"
    body = {"template": {"components": [{}, {}, {"type": 5}]}}
    assert fault.value(body) == 5
    assert Fault(("nope", 3), "type", "").value(body) is None


def test_generic_refusals() -> None:
    assert refusal(b"[]") == ("validation_error", "the request body must be a JSON object", None)
    assert refusal(b'{"b": 1, "a": 2}') == ("validation_error", "unknown field(s): a, b", "a")
    assert refusal(b"{}") == ("validation_error", "'first' is required", "first")
    assert refusal(b'{"first": null}')[1] == "'first' is required"
    assert refusal(b'{"first": "x", "items": [1, "2"]}') == (
        "validation_error",
        "'items[1]': Expected `int`, got `str`",
        "items[1]",
    )


def test_hidden_fields_are_unknown_to_json_but_not_to_callers() -> None:
    assert refusal(b'{"first": "x", "later": "soon"}')[1] == "unknown field(s): later"
    assert refusal(b'{"first": "x", "later": null}')[1] == "unknown field(s): later"
    with pytest.raises(ValidationError, match="later"):
        convert(Outer, {"first": "x", "later": "soon"})
    assert Outer(first="x", later="soon").later == "soon"
    assert "later" not in schemas([Outer])["Outer"]["properties"]


def test_bodies_that_are_no_json_are_refused_as_the_api_always_did() -> None:
    for raw, said in [
        (b"", "Input is a zero-length, empty document"),
        (b'{"first": "\\ud800"}', "no low surrogate in string"),
        (b'{"first": "x", "inner": {"name": "a", "size": NaN}}', "unexpected character"),
        (b"[" * 2000 + b"]" * 2000, "depth limit exceeded"),
    ]:
        with pytest.raises(BadRequest) as exc:
            decode(Outer, raw)
        assert exc.value.detail.startswith("the body is not valid JSON: ")
        assert said in exc.value.detail


def test_numbers_beyond_64_bits_read_as_the_apis_json_parser_reads_them() -> None:
    body = b'{"channel": "whatsapp", "from": "a", "to": "b", "template": {"name": "t", '
    body += b'"language": "de", "components": [{"type": "body", "n": 100000000000000000000}]}}'
    request = decode(SendRequest, body)
    assert request.template is not None and request.template.components is not None
    assert request.template.components[0]["n"] == 1e20


# Integers within 64 bits: beyond them the two paths differ on purpose (the API's parser
# reads them as floats; see the test above), which is not what this property is about.
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(
    st.dictionaries(
        st.sampled_from(["first", "colour", "items", "inner", "choice", "later", "x"]),
        st.one_of(
            st.none(), INT64, st.text(max_size=3), st.sampled_from(["red", "a", "b"]),
            st.lists(INT64, max_size=3),
            st.fixed_dictionaries({"name": st.sampled_from(["ok", "NO", 5])}),
        ),
    )
)  # fmt: skip
def test_decode_and_convert_agree(body: dict[str, Any]) -> None:
    """The fast path (JSON straight into the command) and the slow one (parsed JSON
    checked field by field) accept the same bodies and refuse them alike."""
    raw = json.dumps(body).encode()

    def outcome(run: Any) -> Any:
        try:
            return msgspec.to_builtins(run())
        except GatewayError as exc:
            return (exc.code, exc.detail, exc.extra)

    assert outcome(lambda: decode(Outer, raw)) == outcome(lambda: convert(Outer, body))


def test_schemas_are_openapi_3_1_components() -> None:
    got = schemas([Outer], names={Inner: "Nested"})
    outer = got["Outer"]
    assert "title" not in outer and outer["description"] == "A command for these tests."
    assert outer["additionalProperties"] is False and outer["required"] == ["first"]
    props = outer["properties"]
    assert props["colour"]["anyOf"] == [{"$ref": "#/components/schemas/Colour"}, {"type": "null"}]
    assert got["Colour"]["enum"] == ["red", "green", "blue"]  # declared order, not sorted
    assert got["Colour"]["type"] == "string"
    assert props["inner"]["anyOf"][0] == {"$ref": "#/components/schemas/Nested"}
    assert props["choice"]["type"] == ["string", "null"]
    assert props["choice"]["enum"] == ["a", "b", None]
    assert props["items"]["maxItems"] == 2
    assert set(got) == {"Outer", "Nested", "Colour"}
