"""Addresses (parsing, navigation, ordering) and the registry that maps them to cells."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import trio
import trio.testing

import actors
from actors import (
    ROOT,
    Actor,
    ActorCrashed,
    ActorError,
    ActorNotFound,
    ActorSystem,
    Address,
    AlreadyRegistered,
    ChildSpec,
    DynamicSupervisor,
    InvalidAddress,
    Registry,
    Reply,
    Supervisor,
    as_address,
)
from actors.cell import ActorCell


class Echo(Actor):
    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        if msg == "crash":
            raise ValueError("boom")
        if msg == "incarnation":
            return self.incarnation
        return msg


def make_cell(system: ActorSystem, path: str) -> ActorCell:
    address = Address.parse(path)
    return ActorCell(system, ChildSpec(address.name or "root", Echo), address, None)


# -- Address ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a", ("a",)),
        ("stations/s001/pumps/p03", ("stations", "s001", "pumps", "p03")),
        ("orders/o-1.2:x@y+z_w", ("orders", "o-1.2:x@y+z_w")),
        ("A9/" + "x" * 128, ("A9", "x" * 128)),
    ],
)
def test_parse_and_str_round_trip(text: str, parts: tuple[str, ...]) -> None:
    address = Address.parse(text)
    assert address.parts == parts
    assert str(address) == text
    assert address.path == text
    assert Address.parse(str(address)) == address
    assert Address(parts) == address
    assert address.depth == len(parts)


@pytest.mark.parametrize(
    "bad",
    ["a//b", "/a", "a/", "//", "a b", "_a", "-a", ".", "a/.x", "é", "x" * 129, "a\n"],
)
def test_parse_rejects_malformed_addresses(bad: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        Address.parse(bad)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ActorError)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(InvalidAddress):
        Address.parse(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidAddress):
        Address(("a", 3))  # type: ignore[arg-type]


def test_root() -> None:
    assert Address.parse("") is ROOT
    assert ROOT.parts == ()
    assert str(ROOT) in ("/", "")  # display form; must parse back: see the round-trip test
    assert ROOT.path == ""
    assert ROOT.name == ""
    assert ROOT.parent is None
    assert ROOT.depth == 0
    assert ROOT.child("a") == Address.parse("a")
    assert Address.parse("a").parent == ROOT


def test_str_of_every_address_parses_back() -> None:
    """``str(addr)`` is documented as the canonical form: it must parse back, root included."""
    for address in (Address.parse("a/b"), Address.parse("a"), ROOT):
        assert Address.parse(str(address)) == address


def test_name_parent_and_child() -> None:
    address = Address.parse("stations/s001/pumps/p03")
    assert address.name == "p03"
    assert address.parent == Address.parse("stations/s001/pumps")
    parent = address.parent
    assert parent is not None
    assert parent.parent == Address.parse("stations/s001")
    assert Address.parse("stations").child("s001") == Address.parse("stations/s001")
    built = ROOT / "stations" / "s001"
    assert built == Address.parse("stations/s001")
    assert address.parent.child(address.name) == address
    with pytest.raises(InvalidAddress):
        address.child("bad/name")
    with pytest.raises(InvalidAddress):
        address.child("")


def test_is_ancestor_of() -> None:
    a = Address.parse("a")
    ab = Address.parse("a/b")
    abc = Address.parse("a/b/c")
    assert a.is_ancestor_of(ab)
    assert a.is_ancestor_of(abc)
    assert ab.is_ancestor_of(abc)
    assert ROOT.is_ancestor_of(a)
    assert ROOT.is_ancestor_of(abc)
    # Not reflexive, not upwards, and by segments, not by string prefix.
    assert not a.is_ancestor_of(a)
    assert not ROOT.is_ancestor_of(ROOT)
    assert not abc.is_ancestor_of(ab)
    assert not a.is_ancestor_of(Address.parse("ab"))
    assert not a.is_ancestor_of(Address.parse("b/a"))
    assert not ab.is_ancestor_of(Address.parse("a/bc"))


def test_ordering_equality_and_hashing() -> None:
    texts = ["b", "a/b", "a", "a/a/z", "", "a/b/c", "B"]
    ordered = sorted(Address.parse(t) for t in texts)
    assert [a.parts for a in ordered] == sorted(tuple(t.split("/")) if t else () for t in texts)
    assert ordered[0] is ROOT
    assert Address.parse("a") < Address.parse("a/b") < Address.parse("b")
    assert Address.parse("a/b") == Address(("a", "b"))
    assert hash(Address.parse("a/b")) == hash(Address(("a", "b")))
    assert len({Address.parse("a/b"), Address(("a", "b")), Address.parse("a")}) == 2
    text: object = "a/b"
    assert Address.parse("a/b") != text  # an Address never equals its string form


def test_address_is_frozen() -> None:
    address = Address.parse("a/b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        address.parts = ("c",)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        address.path = "c"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        address.extra = 1  # type: ignore[attr-defined]
    assert str(address) == "a/b"


def test_as_address() -> None:
    address = Address.parse("a/b")
    assert as_address(address) is address
    assert as_address("a/b") == address
    assert as_address("") is ROOT
    with pytest.raises(InvalidAddress):
        as_address("a//b")


# -- Registry -----------------------------------------------------------------------------


async def test_register_lookup_resolve() -> None:
    system = ActorSystem()
    registry = Registry()
    cell = make_cell(system, "stations/s1")
    registry.register(cell)
    assert len(registry) == 1
    assert registry.lookup("stations/s1") is cell
    assert registry.lookup(Address.parse("stations/s1")) is cell
    assert registry.resolve("stations/s1") is cell
    assert registry.resolve(Address.parse("stations/s1")) is cell
    assert "stations/s1" in registry
    assert Address.parse("stations/s1") in registry
    assert registry.lookup("stations") is None
    assert "stations" not in registry


async def test_register_twice_raises_already_registered() -> None:
    system = ActorSystem()
    registry = Registry()
    first = make_cell(system, "a/b")
    registry.register(first)
    with pytest.raises(AlreadyRegistered) as info:
        registry.register(make_cell(system, "a/b"))
    assert info.value.address == "a/b"
    with pytest.raises(AlreadyRegistered):
        registry.register(first)
    assert registry.resolve("a/b") is first
    assert len(registry) == 1


async def test_unregister_only_removes_the_same_cell() -> None:
    system = ActorSystem()
    registry = Registry()
    cell = make_cell(system, "a")
    registry.register(cell)
    registry.unregister(make_cell(system, "a"))  # an impostor at the same address
    assert registry.lookup("a") is cell
    registry.unregister(cell)
    assert registry.lookup("a") is None
    assert len(registry) == 0
    registry.unregister(cell)  # idempotent
    registry.register(make_cell(system, "a"))  # the address is free again
    assert len(registry) == 1


async def test_resolve_unknown_and_malformed() -> None:
    registry = Registry()
    registry.register(make_cell(ActorSystem(), "a"))
    with pytest.raises(ActorNotFound) as info:
        registry.resolve("a/b")
    assert isinstance(info.value, LookupError)
    assert info.value.address == "a/b"
    with pytest.raises(ActorNotFound):
        registry.resolve(Address.parse("zzz"))
    for bad in ("a//b", "/a", "a/"):
        with pytest.raises(InvalidAddress):
            registry.resolve(bad)
        assert registry.lookup(bad) is None


async def test_addresses_sorted_and_by_prefix() -> None:
    system = ActorSystem()
    registry = Registry()
    paths = ["b", "a/y", "a", "ab", "a/x/1", "a/x", "c/a"]
    for path in paths:
        registry.register(make_cell(system, path))
    assert registry.addresses() == sorted(paths)
    assert registry.addresses("a") == ["a", "a/x", "a/x/1", "a/y"]  # not "ab"
    assert registry.addresses(Address.parse("a/x")) == ["a/x", "a/x/1"]
    assert registry.addresses("a/x/1") == ["a/x/1"]
    assert registry.addresses("zzz") == []
    assert registry.addresses("c") == ["c/a"]


# -- the registry of a running system -----------------------------------------------------


async def test_system_registers_the_whole_tree(autojump_clock: trio.testing.MockClock) -> None:
    def group() -> Supervisor:
        return Supervisor([ChildSpec("x", Echo), ChildSpec("y", Echo)])

    specs = [
        ChildSpec("echo", Echo),
        ChildSpec("group", group, shutdown=math.inf),
        ChildSpec("dyn", DynamicSupervisor, shutdown=math.inf),
    ]
    async with actors.open_system(specs) as system:
        await system.start_child(ChildSpec("d1", Echo), supervisor="dyn")
        registry = system.registry
        assert registry.addresses() == ["", "dyn", "dyn/d1", "echo", "group", "group/x", "group/y"]
        assert registry.addresses("group") == ["group", "group/x", "group/y"]
        assert registry.resolve(ROOT) is system.root
        cell = registry.resolve("group/x")
        assert cell.address == Address.parse("group/x")
        assert cell.parent is registry.resolve("group")
        assert await system.call("group/x", "hi") == "hi"
        assert await system.call(Address.parse("dyn/d1"), "hi") == "hi"

        with pytest.raises(AlreadyRegistered) as info:
            await system.start_child(ChildSpec("d1", Echo), supervisor="dyn")
        assert info.value.address == "dyn/d1"

        await system.terminate_child("dyn", "d1")
        assert "dyn/d1" not in registry
        with pytest.raises(ActorNotFound):
            await system.call("dyn/d1", "hi")
    # Leaving the system stops the tree and frees every child's address.
    assert [a for a in registry.addresses() if a] == []


async def test_address_and_cell_survive_restarts(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system([ChildSpec("w", Echo)], intensity=5) as system:
        cell = system.registry.resolve("w")
        first_actor = cell.actor
        assert cell.incarnation == 1
        for expected in (2, 3, 4):
            with pytest.raises(ActorCrashed):
                await system.call("w", "crash")
            assert await system.call("w", "incarnation") == expected
            assert system.registry.resolve("w") is cell
            assert system.registry.lookup(Address.parse("w")) is cell
            assert cell.address == Address.parse("w")
            assert cell.incarnation == expected
            assert cell.restarts == expected - 1
        assert cell.actor is not first_actor  # a fresh actor object for every incarnation
        assert system.registry.addresses() == ["", "w"]
