"""The machinery of the typed commands: decoding, refusals in the API's words, schemas.

A command is a msgspec ``Struct`` (:class:`Command`). Its field types are the shape rules
(types, required fields, list lengths, patterns); msgspec checks them in C while it
decodes the request body straight into the Struct, so the ingest path pays no Python per
field. Rules that need context (a team's region, the member's numbers, the channel's
limits) stay with the code that has the context (``outbound.draft``, ``forwarding``,
``policy``).

When a body does not fit, :func:`explain` finds the problem again on the parsed JSON, in
the order of the command's fields (nested commands first their unknown fields, then their
own fields), and the command's :meth:`Command.refuse` words it as the API always has:
the same problem code, ``detail`` and ``field``. A body that is not JSON is refused with
the message of the API's JSON parser (``jsoncodec``), as before.

A caller inside the process builds a command with keywords (``SendRequest(channel=...,
from_=..., to=...)``): no JSON, types checked by mypy. :func:`convert` checks a plain
``dict`` (a form, a parsed body) exactly as the API checks a body.

:func:`schemas` turns commands into OpenAPI 3.1 component schemas.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any, ClassVar, NamedTuple, TypeVar

import msgspec
import msgspec.inspect as mi

from gateway import jsoncodec
from gateway.errors import BadRequest, GatewayError, ValidationError

C = TypeVar("C", bound="Command")
REF = "#/components/schemas/{name}"

_MESSAGE = re.compile(r"^(?P<text>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_NAMED = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<name>.*)`$")


class Fault(NamedTuple):
    """Why a body does not fit a command: where (``("attachments", 0)``) and what.

    ``kind`` is ``missing`` (a required field is absent; ``path`` ends with its name),
    ``unknown`` (``names``: the fields the command does not take, in the body's order),
    ``null`` (null where a value is needed), ``type`` (a value of the wrong JSON type),
    ``value`` (a value outside an enumeration) or ``constraint`` (a length, range or
    pattern); ``text`` is msgspec's own wording.
    """

    path: tuple[str | int, ...]
    kind: str
    text: str
    names: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """The path as the API names fields: ``email[1]``, ``template.name``."""
        out = ""
        for step in self.path:
            out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
        return out

    def value(self, body: Any) -> Any:
        """The offending value in ``body`` (None when it is absent)."""
        for step in self.path:
            try:
                body = body[step]
            except (KeyError, IndexError, TypeError):
                return None
        return body


class Command(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every typed command: unknown fields are refused (subclasses inherit that;
    declare them ``kw_only=True`` too, so that callers name every field)."""

    # What a body that is no JSON object is told.
    __not_object__: ClassVar[str] = "the request body must be a JSON object"
    # Fields a caller inside the process may set but the API does not take yet: a body
    # naming one is refused as if the field did not exist, and schemas leave it out.
    __hidden__: ClassVar[frozenset[str]] = frozenset()
    # Look for the problem in the body's key order (unknown fields among the others)
    # rather than unknown fields first, then the command's fields in their order.
    __body_order__: ClassVar[bool] = False

    @classmethod
    def refuse(cls, fault: Fault, body: Any) -> GatewayError:
        """The error the API answers for ``fault`` in ``body``; subclasses word their own."""
        if fault.kind == "type" and not fault.path:
            return ValidationError(cls.__not_object__)
        if fault.kind == "unknown":
            names = sorted(fault.names)
            prefix = f"{fault.where}." if fault.path else ""
            return ValidationError(
                f"unknown field(s): {', '.join(prefix + n for n in names)}",
                field=prefix + names[0],
            )
        if fault.kind in ("missing", "null") and len(fault.path) == 1:
            return ValidationError(f"'{fault.where}' is required", field=fault.where)
        return ValidationError(f"'{fault.where}': {fault.text}", field=fault.where)


def decode(model: type[C], raw: bytes) -> C:
    """The command in a JSON body, or ``BadRequest`` (not JSON) / ``ValidationError``."""
    one: Callable[[bytes], C] = decoder(model)
    return one(raw)


@cache
def decoder(model: type[C]) -> Callable[[bytes], C]:
    """``decode`` for one command, made once (for the hot paths)."""
    fast = msgspec.json.Decoder(model).decode
    hidden = tuple(model.__hidden__)

    def decode(raw: bytes) -> C:
        try:
            command = fast(raw)
        except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
            # Parsed again by the API's JSON parser: its message for a body that is no
            # JSON, and its values (it reads integers beyond 64 bits as floats).
            return convert(model, parse(raw))
        for name in hidden:
            if getattr(command, name) is not msgspec.UNSET:
                body = parse(raw)
                raise model.refuse(explain(model, body), body)
        return command

    return decode


def convert(model: type[C], body: Any) -> C:
    """The command in ``body`` (parsed JSON, a form's dict), checked as the API checks it."""
    try:
        command = msgspec.convert(body, model)
    except msgspec.ValidationError:
        fault = explain(model, body)
        raise model.refuse(fault, body) from None
    if model.__hidden__ and _uses_hidden(model, command):
        raise model.refuse(explain(model, body), body)
    return command


def parse(raw: bytes) -> Any:
    """A JSON body, or ``BadRequest`` saying why it is not JSON (or nested deeper than
    any command goes: a deep body would make the refusal's messages recurse)."""
    try:
        return jsoncodec.loads_external(raw)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def _uses_hidden(model: type[Command], command: Command) -> bool:
    return any(getattr(command, name) is not msgspec.UNSET for name in model.__hidden__)


# -- finding the fault again ---------------------------------------------------------------
def explain(model: type[Command], body: Any, at: tuple[str | int, ...] = ()) -> Fault:
    """The first fault of ``body`` for ``model``, in the order the API checks."""
    if not isinstance(body, dict):
        return Fault(at, "type", f"Expected `object`, got `{_json_type(body)}`")
    fields = {f.encode_name: f for f in msgspec.structs.fields(model)}
    known = set(fields) - model.__hidden__
    unknown = tuple(str(k) for k in body if k not in known)
    if unknown and not model.__body_order__:
        return Fault(at, "unknown", "unknown fields", unknown)
    order = list(body) if model.__body_order__ else list(fields)
    for name in order:
        if name not in known:
            return Fault(at, "unknown", "unknown fields", (str(name),))
        info = fields[name]
        if name not in body:
            if info.required:
                return Fault((*at, name), "missing", f"Object missing required field `{name}`")
            continue
        fault = _field_fault(info.type, body[name], (*at, name))
        if fault is not None:
            return fault
    # msgspec refused what the checks above let pass: say what msgspec said.
    try:
        msgspec.convert(body, model)
    except msgspec.ValidationError as exc:
        return _fault(exc, at)
    return Fault(at, "constraint", "not acceptable")


def _field_fault(kind: Any, value: Any, at: tuple[str | int, ...]) -> Fault | None:
    nested = _nested_command(kind)
    if nested is not None and isinstance(value, dict):
        return explain(nested, value, at)
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        return _fault(exc, at)
    return None


def _nested_command(kind: Any) -> type[Command] | None:
    """The command a field holds (``Template | None`` → ``Template``), if it holds one."""
    info = mi.type_info(kind)
    while isinstance(info, mi.Metadata):
        info = info.type
    options = info.types if isinstance(info, mi.UnionType) else (info,)
    found = [o.cls for o in options if isinstance(o, mi.StructType)]
    others = [o for o in options if not isinstance(o, mi.StructType | mi.NoneType)]
    if len(found) == 1 and not others and issubclass(found[0], Command):
        return found[0]
    return None


def _fault(exc: msgspec.ValidationError, at: tuple[str | int, ...]) -> Fault:
    match = _MESSAGE.match(str(exc))
    assert match is not None  # the pattern matches any text
    text, raw_path = match["text"], match["path"] or ""
    path: tuple[str | int, ...] = at + tuple(
        int(m[2]) if m[2] is not None else m[1] for m in _STEP.finditer(raw_path)
    )
    named = _NAMED.match(text)
    if named and text.startswith("Object missing"):
        return Fault((*path, named["name"]), "missing", text)
    if named:
        return Fault(path, "unknown", text, (named["name"],))
    if text.startswith("Expected") and text.endswith("got `null`"):
        return Fault(path, "null", text)
    if text.startswith("Expected") and ", got `" in text:
        return Fault(path, "type", text)
    if text.startswith("Invalid enum value"):
        return Fault(path, "value", text)
    return Fault(path, "constraint", text)


def _json_type(value: Any) -> str:
    """msgspec's name for the JSON type of ``value`` (which is no object)."""
    kinds = ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "array"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


# -- OpenAPI -----------------------------------------------------------------------------
def schemas(models: Iterable[type], names: Mapping[type, str] | None = None) -> dict[str, Any]:
    """OpenAPI 3.1 component schemas of ``models`` and of the types they use, their
    references pointing into ``#/components/schemas``; ``names`` renames components."""
    models = tuple(models)
    _, components = msgspec.json.schema_components(models, ref_template=REF)
    types = _named_types(models)
    renames = {t.__name__: n for t, n in (names or {}).items()}
    out: dict[str, Any] = {}
    for name, schema in components.items():
        kind = types.get(name)
        schema.pop("title", None)
        if "description" in schema:  # from a docstring: one paragraph
            schema["description"] = " ".join(schema["description"].split())
        if schema.get("required") == []:
            del schema["required"]
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            # msgspec sorts the values; the API lists them in the enumeration's order.
            schema["enum"] = [member.value for member in kind]
            if all(isinstance(v, str) for v in schema["enum"]):
                schema = {"type": "string", **schema}
        if isinstance(kind, type) and issubclass(kind, Command):
            for hidden in kind.__hidden__:
                schema["properties"].pop(hidden, None)
        out[renames.get(name, name)] = _tidy(schema, renames)
    # Only what the models use once hidden fields are gone.
    wanted = [renames.get(m.__name__, m.__name__) for m in models]
    used: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name not in used and name in out:  # others are written by hand
            used.add(name)
            wanted += _refs(out[name])
    return {name: schema for name, schema in out.items() if name in used}


def _refs(node: Any) -> list[str]:
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    if not isinstance(node, dict):
        return []
    own = [node["$ref"].rsplit("/", 1)[-1]] if isinstance(node.get("$ref"), str) else []
    return own + [r for v in node.values() for r in _refs(v)]


def _named_types(models: tuple[type, ...]) -> dict[str, type]:
    """Every Struct and Enum reachable from ``models``, by name."""
    found: dict[str, type] = {}

    def walk(info: Any) -> None:
        if isinstance(info, mi.StructType):
            if info.cls.__name__ in found:
                return
            found[info.cls.__name__] = info.cls
            for f in info.fields:
                walk(f.type)
        elif isinstance(info, mi.EnumType):
            found[info.cls.__name__] = info.cls
        elif isinstance(info, mi.Metadata):
            walk(info.type)
        elif isinstance(info, mi.UnionType):
            for option in info.types:
                walk(option)
        elif isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            walk(info.item_type)
        elif isinstance(info, mi.DictType):
            walk(info.value_type)

    for info in mi.multi_type_info(models):
        walk(info)
    return found


def _tidy(node: Any, renames: Mapping[str, str]) -> Any:
    """Nullable unions as ``type: [X, "null"]`` (as the hand-written parts write them),
    references renamed."""
    if isinstance(node, list):
        return [_tidy(v, renames) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _tidy(v, renames) for k, v in node.items()}
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        node["$ref"] = REF.format(name=renames.get(name, name))
    enum_ = node.get("enum")
    if "type" not in node and isinstance(enum_, list) and all(isinstance(v, str) for v in enum_):
        node = {"type": "string", **node}
    options = node.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and options[1] == {"type": "null"}:
        first = options[0]
        if isinstance(first.get("type"), str):
            del node["anyOf"]
            node = {**first, **node, "type": [first["type"], "null"]}
            if "enum" in first:
                node["enum"] = [*first["enum"], None]
    return node
