"""The switch's Prometheus metrics: each appears in the exposition once the event it counts has
happened, driving the real code where that is cheap (the journal writer on the real database,
HTTP through hypercorn, a PumpActor polling the simulator, a ChannelActor, an actor system), and
no input can grow the number of series."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from actors import Actor, ChildSpec, Supervisor, open_system
from channels.actor_messages import Hold, Query
from channels.model import Outcome
from channels.supervision import channel_spec
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import ModbusTcpClient
from devices.pump import PumpActor
from ops.metrics import METRICS, Metrics, label
from switch.http import create_app, serve_http
from switch.store import Store
from switch.store.journal import Event, Journal, journal_writer_spec
from tests.channels.test_channel_actor import DoubleChannel, config, hold, result_for
from tests.devices.sim_support import SimProcess

SAFE = 30.0  # a bound for what must happen, never a measurement


def series(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` in the exposition: sorted labels -> value."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for ``predicate`` (bounded, never timed)."""
    with trio.fail_after(SAFE):
        while not predicate():  # noqa: ASYNC110 (a metric has no event to wait for)
            await trio.sleep(0.02)
    assert predicate(), what


# -- labels ------------------------------------------------------------------------------------


def test_label_values_outside_their_shape_fold_into_other() -> None:
    metrics = Metrics()
    assert label("hold") == "hold"
    assert label("Hold") == label("a b") == label("x" * 60) == label("") == "other"
    hostile = ['wx"}\n', "../../etc", "x" * 300, "UPPER", "sp ace", "{evil}", "ünï"]
    for value in hostile:
        metrics.count_payment_attempt(value, value, value)
        metrics.count_sale(value, value + "#" * 20, 1000, 100)
        metrics.observe_http(value, value, 999, 0.01)
        metrics.observe_pump_poll(value, 0.001)
    assert set(series(metrics, "fuelswitch_payment_attempts_total")) == {
        (("channel", "other"), ("operation", "other"), ("outcome", "other"))
    }
    assert series(metrics, "fuelswitch_sales_total") == {
        (("flow", "other"), ("grade", "other")): len(hostile)
    }
    assert set(series(metrics, "fuelswitch_http_request_seconds_count")) == {
        (("method", "other"), ("route", "other"), ("status", "other"))
    }
    assert set(series(metrics, "fuelswitch_pump_poll_seconds_count")) == {(("protocol", "other"),)}


def test_well_formed_values_are_kept_as_given() -> None:
    metrics = Metrics()
    metrics.count_payment_attempt("wechatpay-main", "hold", "declined")
    metrics.count_sale("postpay", "92", 3_000, 2_367)
    metrics.count_sale("postpay", "92", 1_500, 1_184)
    metrics.count_sale("prepay", None, 0, 0)  # a sale with no grade on record
    metrics.observe_http("POST", "/api/orders/{order_id}/cancel", 409, 0.003)
    assert (
        metrics.sample(
            "fuelswitch_payment_attempts_total",
            channel="wechatpay-main",
            operation="hold",
            outcome="declined",
        )
        == 1
    )
    postpay_92 = {"flow": "postpay", "grade": "92"}
    assert metrics.sample("fuelswitch_sales_total", **postpay_92) == 2
    assert metrics.sample("fuelswitch_sales_volume_ml_total", **postpay_92) == 4_500
    assert metrics.sample("fuelswitch_sales_amount_fen_total", **postpay_92) == 3_551
    assert metrics.sample("fuelswitch_sales_total", flow="prepay", grade="unknown") == 1
    assert (
        metrics.sample(
            "fuelswitch_http_request_seconds_count",
            method="POST",
            route="/api/orders/{order_id}/cancel",
            status="4xx",
        )
        == 1
    )
    assert Metrics().sample("fuelswitch_sales_total", **postpay_92) == 0  # a fresh registry


# -- the journal writer, on the real database --------------------------------------------------


async def test_the_journal_writer_observes_each_committed_batch(store: Store) -> None:
    batches = METRICS.sample("fuelswitch_journal_batch_size_count")
    events = METRICS.sample("fuelswitch_journal_batch_size_sum")
    commits = METRICS.sample("fuelswitch_journal_commit_seconds_count")
    async with open_system([journal_writer_spec(store.db)], intensity=10) as system:
        journal = Journal(system, store.db)
        await journal.append("metrics:one", [Event("a", {}), Event("b", {})], expected_seq=0)
        async with trio.open_nursery() as nursery:
            for n in range(20):
                append = partial(journal.append, f"metrics:s{n}", [Event("c", {})], expected_seq=0)
                nursery.start_soon(append)
    assert METRICS.sample("fuelswitch_journal_batch_size_sum") - events == 22
    committed = METRICS.sample("fuelswitch_journal_batch_size_count") - batches
    assert 2 <= committed <= 21  # group commit: the 20 concurrent appends share batches
    assert METRICS.sample("fuelswitch_journal_commit_seconds_count") - commits == committed
    bucket = METRICS.sample("fuelswitch_journal_batch_size_bucket", le="2000.0")
    assert bucket == METRICS.sample("fuelswitch_journal_batch_size_count")


# -- HTTP through hypercorn --------------------------------------------------------------------


@asynccontextmanager
async def http_server(metrics: Metrics) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(metrics=metrics)

    @app.get("/test/items/{number}")
    async def item(number: int) -> dict[str, int]:
        return {"number": number}

    @app.get("/test/crash")
    async def crash() -> dict[str, str]:
        raise RuntimeError("on purpose")

    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_http, app)
        async with httpx.AsyncClient(base_url=bound.url, timeout=SAFE) as client:
            yield client
        nursery.cancel_scope.cancel()


async def test_http_requests_are_timed_by_route_template_and_status_class() -> None:
    metrics = Metrics()
    async with http_server(metrics) as client:
        for number in range(5):
            assert (await client.get(f"/test/items/{number}")).status_code == 200
        assert (await client.get("/test/items/seven")).status_code == 422
        for path in ("/nowhere", "/nowhere/else", "/secret-token-abc"):
            assert (await client.get(path)).status_code == 404
        assert (await client.get("/test/crash")).status_code == 500
        assert (await client.post("/healthz")).status_code == 405
        assert (await client.get("/metrics")).status_code == 200
    counts = series(metrics, "fuelswitch_http_request_seconds_count")
    route = {
        key: value for key, value in counts.items() if ("route", "/test/items/{number}") in key
    }
    assert route == {
        (("method", "GET"), ("route", "/test/items/{number}"), ("status", "2xx")): 5,
        (("method", "GET"), ("route", "/test/items/{number}"), ("status", "4xx")): 1,
    }
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "4xx"))] == 3
    assert counts[(("method", "GET"), ("route", "/test/crash"), ("status", "5xx"))] == 1
    assert counts[(("method", "POST"), ("route", "/healthz"), ("status", "4xx"))] == 1
    assert not any("nowhere" in value or "secret" in value for key in counts for _, value in key)


# -- pump polls against the simulator ----------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    process = SimProcess(
        "--stations", "1", "--pumps-per-station", "1", "--port-base", "0",
        "--control-port", "0", "--seed", "5",
    )  # fmt: skip
    process.start()
    yield process
    process.kill()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_pump_polls_are_timed_and_failures_counted_by_protocol(
    store: Store, sim: SimProcess
) -> None:
    def polls() -> float:
        return METRICS.sample("fuelswitch_pump_poll_seconds_count", protocol="gfd1")

    def errors() -> float:
        return METRICS.sample("fuelswitch_pump_poll_errors_total", protocol="gfd1")

    answered, failed = polls(), errors()
    async with (
        ModbusTcpClient("127.0.0.1", sim.port(0), timeout=0.25, max_in_flight=1) as good,
        ModbusTcpClient("127.0.0.1", closed_port(), timeout=0.25, max_in_flight=1) as dead,
        open_system([journal_writer_spec(store.db)], intensity=10) as system,
    ):
        journal = Journal(system, store.db)
        for name, client in (("up", good), ("down", dead)):
            factory = partial(
                PumpActor,
                Gfd1Driver(client, 1, nozzles=2),
                journal,
                stream_id=f"pump:m{id(store)}.{name}",
                idle_poll_s=0.05,
            )
            await system.start_child(ChildSpec(name, factory))
        await until(lambda: polls() >= answered + 3, "three answered polls")
        await until(lambda: errors() >= failed + 3, "three failed polls")
    assert METRICS.sample("fuelswitch_pump_poll_seconds_bucket", protocol="gfd1", le="+Inf") == (
        polls()
    )


def test_a_dart_driver_names_its_protocol() -> None:
    from devices.dart.driver import DartDriver

    assert DartDriver.protocol == "dart"
    metrics = Metrics()
    metrics.observe_pump_poll("dart", 0.02)
    metrics.count_pump_poll_error("dart")
    assert metrics.sample("fuelswitch_pump_poll_seconds_count", protocol="dart") == 1
    assert metrics.sample("fuelswitch_pump_poll_errors_total", protocol="dart") == 1


# -- provider calls through a ChannelActor -----------------------------------------------------


async def test_payment_attempts_count_each_provider_call_by_outcome() -> None:
    double = DoubleChannel()
    name = "metrics-double"

    def count(operation: str, outcome: str) -> float:
        return METRICS.sample(
            "fuelswitch_payment_attempts_total", channel=name, operation=operation, outcome=outcome
        )

    before = {
        (op, out): count(op, out)
        for op in ("hold", "query")
        for out in ("success", "declined", "pending", "unknown", "error")
    }
    spec = channel_spec(config(name), make_channel=lambda _: double)
    async with open_system([ChildSpec("channels", lambda: Supervisor([spec]))]) as system:
        address = f"channels/{name}"
        await system.call(address, hold("K-1"))
        double.behaviour = result_for(Outcome.DECLINED, "NOTENOUGH")
        await system.call(address, hold("K-2"))
        double.behaviour = result_for(Outcome.PENDING)
        await system.call(address, Hold(hold("K-3").request))
        double.behaviour = result_for(Outcome.UNKNOWN, "timeout")
        await system.call(address, Query("K-3"))
        double.behaviour = result_for(Outcome.TECHNICAL_FAILURE, "http_503")
        await system.call(address, Query("K-3"))
    assert {key: count(*key) - was for key, was in before.items() if count(*key) != was} == {
        ("hold", "success"): 1,
        ("hold", "declined"): 1,
        ("hold", "pending"): 1,
        ("query", "unknown"): 1,
        ("query", "error"): 1,
    }


# -- actors, read at scrape time ---------------------------------------------------------------


class Sleeper(Actor):
    """Takes its first cast and waits on ``gate`` with it: later casts queue."""

    def __init__(self, gate: trio.Event) -> None:
        self.gate = gate

    async def handle_cast(self, msg: object) -> None:
        if msg == "crash":
            raise RuntimeError("on purpose")
        await self.gate.wait()


class Idle(Actor):
    pass


async def test_watch_system_publishes_depths_and_restarts_by_kind_at_scrape_time() -> None:
    metrics = Metrics()
    gate = trio.Event()
    children = [ChildSpec(f"s{n}", lambda: Sleeper(gate)) for n in range(3)]
    children += [ChildSpec(f"i{n}", Idle) for n in range(4)]
    async with open_system(
        [ChildSpec("workers", lambda: Supervisor(children, intensity=10))]
    ) as system:
        metrics.watch_system(system)
        for _ in range(5):
            system.cast("workers/s0", "wait")
        system.cast("workers/s1", "wait")
        system.cast("workers/s1", "wait")
        system.cast("workers/s2", "crash")
        s2 = system.registry.lookup("workers/s2")
        assert s2 is not None
        await until(lambda: s2.restarts == 1, "s2 restarted")
        await trio.testing.wait_all_tasks_blocked()
        assert metrics.sample("fuelswitch_actors", kind="Sleeper") == 3
        assert metrics.sample("fuelswitch_actors", kind="Idle") == 4
        assert metrics.sample("fuelswitch_mailbox_depth_sum", kind="Sleeper") == 4 + 1
        assert metrics.sample("fuelswitch_mailbox_depth_max", kind="Sleeper") == 4
        assert metrics.sample("fuelswitch_mailbox_depth_max", kind="Idle") == 0
        assert metrics.sample("fuelswitch_actor_restarts", kind="Sleeper") == 1
        assert metrics.sample("fuelswitch_actor_restarts", kind="Idle") == 0
        assert metrics.sample("fuelswitch_actors", kind="Supervisor") >= 2
        gate.set()
        await until(
            lambda: metrics.sample("fuelswitch_mailbox_depth_sum", kind="Sleeper") == 0,
            "mailboxes drained",
        )
        metrics.unwatch_system(system)
        assert metrics.sample("fuelswitch_actors", kind="Sleeper") == 0
