"""Request parsing, argument validation and the wire conversion: pure, no sockets."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ops.admin import (
    AdminError,
    Caller,
    Command,
    CommandTable,
    ErrorCode,
    Param,
    Reply,
    parse_reply,
    parse_request,
    to_wire,
)
from tests.ops.support import basic_commands, echo, packed


def malformed(frame: bytes) -> AdminError:
    with pytest.raises(AdminError) as caught:
        parse_request(frame)
    assert caught.value.code == ErrorCode.MALFORMED
    return caught.value


def test_a_well_formed_request() -> None:
    request = parse_request(packed({"id": 7, "cmd": "tree", "args": {"limit": 5}}))
    assert (request.id, request.cmd, dict(request.args)) == (7, "tree", {"limit": 5})


def test_args_may_be_left_out() -> None:
    assert parse_request(packed({"id": 1, "cmd": "status"})).args == {}


@pytest.mark.parametrize(
    "frame",
    [b"\xc1", b"", packed(1) + b"x", b"\x92\x01"],
    ids=["reserved byte", "empty", "trailing bytes", "truncated"],
)
def test_bytes_that_are_not_one_msgpack_value(frame: bytes) -> None:
    assert "not msgpack" in malformed(frame).message


@pytest.mark.parametrize("value", [[1, "status", {}], "status", 3, None])
def test_a_request_that_is_not_a_map(value: Any) -> None:
    assert "is a map" in malformed(packed(value)).message


@pytest.mark.parametrize(
    ("value", "field", "request_id"),
    [
        ({"cmd": "status"}, "'id'", 0),
        ({"id": "1", "cmd": "status"}, "'id'", 0),
        ({"id": True, "cmd": "status"}, "'id'", 0),
        ({"id": 4}, "'cmd'", 4),
        ({"id": 4, "cmd": 9}, "'cmd'", 4),
        ({"id": 5, "cmd": "x", "args": [1]}, "'args'", 5),
    ],
)
def test_missing_or_mistyped_fields_are_named(value: Any, field: str, request_id: int) -> None:
    error = malformed(packed(value))
    assert field in error.message
    assert error.request_id == request_id  # the reply still answers the id when it had one


def test_invalid_utf8_is_malformed() -> None:
    malformed(b"\x81\xa3cmd\xa2\xff\xfe")


def test_unknown_commands_are_reported_by_name() -> None:
    table = CommandTable(basic_commands())
    with pytest.raises(AdminError) as caught:
        table.lookup("nope")
    assert caught.value.code == ErrorCode.UNKNOWN_COMMAND
    assert "'nope'" in caught.value.message


def bad_args(command: Command, args: dict[str, Any]) -> str:
    with pytest.raises(AdminError) as caught:
        command.bind(args)
    assert caught.value.code == ErrorCode.BAD_ARGS
    return caught.value.message


def test_bind_fills_defaults_with_fresh_copies() -> None:
    command = basic_commands()[0]
    first = command.bind({"n": 1})
    assert first == {"n": 1, "word": "hi", "flag": False, "items": []}
    first["items"].append("x")
    assert command.bind({"n": 1})["items"] == []


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ({}, "missing argument 'n'"),
        ({"n": "1"}, "argument 'n' must be int, not str"),
        ({"n": True}, "argument 'n' must be int, not bool"),
        ({"n": 1, "flag": 1}, "argument 'flag' must be bool, not int"),
        ({"n": 1, "items": {}}, "argument 'items' must be list, not dict"),
        ({"n": 1, "word": None}, "argument 'word' must be str, not nil"),
        ({"n": 1, "extra": 2}, "unknown argument 'extra'"),
    ],
)
def test_bad_args_name_the_argument(args: dict[str, Any], names: str) -> None:
    assert names in bad_args(basic_commands()[0], args)


def test_a_float_param_takes_ints_too() -> None:
    command = Command("f", echo, (Param("x", float, required=True),))
    assert command.bind({"x": 2}) == {"x": 2.0}
    assert "must be float" in bad_args(command, {"x": "2"})


def test_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="kind"):
        Param("x", tuple)
    with pytest.raises(ValueError, match="twice"):
        Command("c", echo, (Param("x", int), Param("x", str)))
    with pytest.raises(ValueError, match="declared twice"):
        CommandTable([Command("help", echo)])


async def test_help_describes_every_command() -> None:
    table = CommandTable(basic_commands())
    described = await table.lookup("help").handler({}, Caller(0, 1, 0))
    by_name = {c["name"]: c for c in described["commands"]}
    assert set(by_name) == {"help", "echo", "boom", "act", "act_boom"}
    assert by_name["act"]["action"] is True
    assert by_name["echo"]["params"][0] == {
        "name": "n",
        "kind": "int",
        "required": True,
        "default": None,
        "help": "",
    }


def test_replies_round_trip() -> None:
    ok = Reply.success(3, {"a": [1, 2]})
    assert parse_reply(packed(ok.to_map())) == ok
    error = Reply.failure(4, ErrorCode.NOT_FOUND, "no actor at x")
    assert error.to_map() == {
        "id": 4,
        "ok": False,
        "error": {"code": "not_found", "message": "no actor at x"},
    }
    assert parse_reply(packed(error.to_map())) == error
    with pytest.raises(ValueError):
        parse_reply(packed({"id": 1, "ok": False}))


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True, slots=True)
class Inner:
    colour: Colour
    at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Outer:
    inner: Inner
    tags: tuple[str, ...]
    seen: frozenset[int]
    home: Path
    price: Decimal
    raw: bytes


def test_to_wire_converts_the_documented_types() -> None:
    at = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    value = Outer(
        Inner(Colour.RED, at), ("a", "b"), frozenset({3, 1}), Path("/x/y"), Decimal("7.89"), b"\x00"
    )
    assert to_wire(value) == {
        "inner": {"colour": "red", "at": "2025-01-02T03:04:05+00:00"},
        "tags": ["a", "b"],
        "seen": [1, 3],
        "home": "/x/y",
        "price": "7.89",
        "raw": b"\x00",
    }
    assert to_wire({Colour.RED: 1, (1, 2): 2}) == {"red": 1, "[1, 2]": 2}
    assert to_wire(2**70) == str(2**70)
    assert to_wire(object.__new__(object)).startswith("<object")


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_like)
def test_wire_values_pass_through_unchanged_and_pack(value: Any) -> None:
    assert to_wire(value) == value
    assert msgpack.unpackb(packed(to_wire(value)), raw=False) == value
