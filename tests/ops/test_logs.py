"""The logging setup: JSON lines that carry their context, secrets redacted, levels changed at
run time, readable console text; request ids over a real hypercorn server; and actors' context
(a pump's station) in their lines. Every test leaves structlog as the test suite had it."""

from __future__ import annotations

import io
import logging
import os
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import orjson
import pytest
import structlog
import trio

from actors import ChildSpec, Supervisor, open_system
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import ModbusTcpClient
from devices.pump import PumpActor
from ops.logs import REDACTED, configure_logging, current_level, redact, set_level
from ops.metrics import Metrics
from ops.process import configure_stderr_logs
from switch.http import create_app, serve_http
from switch.store import Store
from switch.store.journal import Journal, journal_writer_spec

SAFE = 30.0  # a bound for what must happen, never a measurement
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put back the suite's quiet structlog and the root logger's handlers afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    configure_logging("json", "critical", io.StringIO())  # forgets per-name levels
    structlog.configure(**saved)
    structlog.contextvars.clear_contextvars()
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO | io.BytesIO) -> list[dict[str, Any]]:
    data = stream.getvalue()
    text = data.decode() if isinstance(data, bytes) else data
    return [orjson.loads(line) for line in text.splitlines() if line]


def events(stream: io.StringIO) -> list[str]:
    return [line["event"] for line in lines(stream)]


# -- JSON lines ------------------------------------------------------------------------------


def test_json_lines_carry_time_level_logger_event_and_bound_context() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    log = structlog.get_logger("orders")
    structlog.contextvars.bind_contextvars(order_id="O-1", station="s001", request_id="r-9")
    log.info("order.ended", state="completed", amounts={1: 200, 2: 300}, when=datetime.now(UTC))
    with structlog.contextvars.bound_contextvars(channel="wx-main"):
        log.warning("order.alert", kind="sale_lost")
    structlog.contextvars.clear_contextvars()
    log.error("order.plain")
    first, second, third = lines(out)
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["level"] == "info" and first["logger"] == "orders"
    assert first["event"] == "order.ended" and first["state"] == "completed"
    assert first["amounts"] == {"1": 200, "2": 300}  # integer keys are fine
    assert datetime.fromisoformat(first["timestamp"]).utcoffset() == timedelta(0)
    assert (first["order_id"], first["station"], first["request_id"]) == ("O-1", "s001", "r-9")
    assert second["channel"] == "wx-main" and second["level"] == "warning"
    assert "order_id" not in third and "channel" not in third


def test_json_goes_to_binary_streams_too_and_exceptions_have_no_locals() -> None:
    out = io.BytesIO()
    configure_logging("json", "info", out)

    def connect(password: str) -> None:
        raise ValueError(f"cannot connect to postgresql://fuel:{password}@db/fuel")

    password = "hun" + "ter2"  # so that no source line in the traceback spells it
    try:
        connect(password)
    except ValueError:
        structlog.get_logger("store").exception("store.failed")
    (line,) = lines(out)
    assert line["level"] == "error" and line["logger"] == "store"
    assert "ValueError" in line["exception"] and "Traceback" in line["exception"]
    assert "hunter2" not in out.getvalue().decode()  # no locals; the URL's password masked
    assert f"fuel:{REDACTED}@db" in line["exception"]


def test_standard_library_records_come_out_the_same_way() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    structlog.contextvars.bind_contextvars(request_id="r-1")
    logging.getLogger("hypercorn.error").warning("connection %s lost", "c-7")
    logging.getLogger("asyncpg").debug("below the level")
    (line,) = lines(out)
    assert line["event"] == "connection c-7 lost"
    assert line["logger"] == "hypercorn.error" and line["level"] == "warning"
    assert line["request_id"] == "r-1" and "timestamp" in line


# -- secrets ---------------------------------------------------------------------------------


def test_secrets_are_redacted_at_any_depth_and_ordinary_keys_are_kept() -> None:
    out = io.StringIO()
    configure_logging("json", "debug", out)
    structlog.get_logger("channels").info(
        "channel.request",
        order_id="O-1",
        out_trade_no="T-1",
        key="K-1",  # an idempotency key, not a secret
        signal=15,
        sign_type="RSA",
        token_ttl_s=600,
        cert_serial="5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        password="p",
        api_v3_key="k",
        privateKey="pem",
        headers={"Authorization": "WECHATPAY2 ...", "Content-Type": "application/json"},
        nested={"deeper": [{"client_secret": "s", "amount_fen": 100}, ("auth_token", 7)]},
        dsn="postgresql://fuel:pw@localhost:5432/fuel",
        sign="abc",
        token=12345,
    )
    (line,) = lines(out)
    for kept in ("order_id", "out_trade_no", "key", "signal", "sign_type", "token_ttl_s"):
        assert line[kept] != REDACTED, kept
    assert line["cert_serial"].startswith("5157")
    for secret in ("password", "api_v3_key", "privateKey", "sign", "token"):
        assert line[secret] == REDACTED, secret
    assert line["headers"] == {"Authorization": REDACTED, "Content-Type": "application/json"}
    assert line["nested"]["deeper"][0] == {"client_secret": REDACTED, "amount_fen": 100}
    assert line["nested"]["deeper"][1] == ["auth_token", 7]  # a value, not a key
    assert line["dsn"] == f"postgresql://fuel:{REDACTED}@localhost:5432/fuel"


def test_redaction_is_a_plain_processor_over_an_event_dict() -> None:
    cleaned = redact(None, "info", {"event": "x", "Private-Key": "k", "items": [{"passwd": 1}]})
    assert cleaned == {"event": "x", "Private-Key": REDACTED, "items": [{"passwd": REDACTED}]}


# -- levels ----------------------------------------------------------------------------------


module_log = structlog.get_logger("orders.steps")  # made before any setup, as modules do


def test_set_level_takes_effect_for_loggers_made_before() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    assert current_level() == "info"
    module_log.debug("hidden.1")
    module_log.info("shown.1")
    assert set_level("WARNING") == "warning"
    module_log.info("hidden.2")
    module_log.warning("shown.2")
    set_level("debug")
    module_log.debug("shown.3")
    assert events(out) == ["shown.1", "shown.2", "shown.3"]
    with pytest.raises(ValueError, match="debug, info, warning, error, critical"):
        set_level("verbose")
    assert current_level() == "debug"


def test_a_level_for_one_logger_name_covers_the_names_under_it() -> None:
    out = io.StringIO()
    configure_logging("json", "warning", out)
    set_level("debug", "orders")
    module_log.debug("orders.steps.debug")
    structlog.get_logger("orders").info("orders.info")
    structlog.get_logger("ordersx").info("ordersx.hidden")  # not under "orders"
    structlog.get_logger("switch").info("switch.hidden")
    structlog.get_logger("switch").warning("switch.warning")
    logging.getLogger("orders.db").debug("stdlib under orders")
    assert current_level("orders.steps") == "debug" and current_level("switch") == "warning"
    set_level("error", "orders.steps")
    module_log.warning("orders.steps.hidden")
    structlog.get_logger("orders").debug("orders.debug")
    assert events(out) == [
        "orders.steps.debug",
        "orders.info",
        "switch.warning",
        "stdlib under orders",
        "orders.debug",
    ]


# -- console and auto ------------------------------------------------------------------------


def test_console_lines_are_readable_text_without_colours_off_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("console", "info", out)
    structlog.get_logger("sim").info("sim.ready", port=5020, secret="s3cr3t")
    text = out.getvalue()
    assert "sim.ready" in text and "port=5020" in text and "[sim]" in text
    assert f"secret={REDACTED}" in text and "s3cr3t" not in text
    assert "\x1b[" not in text
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)


def test_auto_is_json_off_a_terminal_and_console_on_one() -> None:
    out = io.StringIO()
    configure_logging("auto", "info", out)
    structlog.get_logger("x").info("piped")
    assert lines(out)[0]["event"] == "piped"
    controller, terminal = os.openpty()
    with (
        open(terminal, "w", encoding="utf-8", closefd=True) as tty,
        open(controller, "rb", buffering=0, closefd=True) as screen,
    ):
        configure_logging("auto", "info", tty)
        structlog.get_logger("x").info("on.a.terminal", n=1)
        shown = screen.read(4096).decode()
    assert "on.a.terminal" in shown and not shown.lstrip().startswith("{")
    with pytest.raises(ValueError, match="auto, json, console"):
        configure_logging("xml", "info", out)


def test_the_simulators_stderr_setup_is_the_console_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_stderr_logs(verbose=False)
    structlog.get_logger("sim").info("sim.quiet")
    structlog.get_logger("sim").warning("sim.loud", signal=15)
    configure_stderr_logs(verbose=True)
    structlog.get_logger("sim").info("sim.verbose")
    err = capsys.readouterr().err
    assert "sim.quiet" not in err
    assert "sim.loud" in err and "signal=15" in err and "sim.verbose" in err


# -- request ids over hypercorn --------------------------------------------------------------


async def test_requests_carry_an_id_in_their_log_lines_and_their_answer() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    app = create_app(metrics=Metrics())
    log = structlog.get_logger("test.http")
    both_in = trio.Event()
    inside = 0

    @app.get("/test/work/{name}")
    async def work(name: str) -> dict[str, str]:
        nonlocal inside
        inside += 1
        if inside == 2:
            both_in.set()
        with trio.fail_after(SAFE):
            await both_in.wait()  # two requests in flight at once
        log.info("test.work", name=name)
        return {"name": name}

    @app.get("/test/crash")
    async def crash() -> dict[str, str]:
        raise RuntimeError("on purpose")

    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_http, app)
        async with httpx.AsyncClient(base_url=bound.url, timeout=SAFE) as client:
            answers: dict[str, httpx.Response] = {}

            async def get(name: str, rid: str) -> None:
                answers[name] = await client.get(
                    f"/test/work/{name}", headers={"X-Request-ID": rid}
                )

            async with trio.open_nursery() as requests:
                requests.start_soon(get, "a", "abc.DEF-123_4")
                requests.start_soon(get, "b", "x" * 65)  # too long: replaced
            bad = await client.get("/healthz", headers={"X-Request-ID": "two words"})
            none = await client.get("/healthz")
            crashed = await client.get("/test/crash", headers={"X-Request-ID": "crash-1"})
        nursery.cancel_scope.cancel()
    assert answers["a"].headers["X-Request-ID"] == "abc.DEF-123_4"
    replaced = answers["b"].headers["X-Request-ID"]
    assert HEX32.fullmatch(replaced)
    assert HEX32.fullmatch(bad.headers["X-Request-ID"])
    assert HEX32.fullmatch(none.headers["X-Request-ID"])
    assert none.headers["X-Request-ID"] != bad.headers["X-Request-ID"]
    assert crashed.status_code == 500 and crashed.headers["X-Request-ID"] == "crash-1"
    seen = {line["name"]: line["request_id"] for line in lines(out) if line["event"] == "test.work"}
    assert seen == {"a": "abc.DEF-123_4", "b": replaced}
    (unhandled,) = [line for line in lines(out) if line["event"] == "http.unhandled"]
    assert unhandled["request_id"] == "crash-1" and "RuntimeError" in unhandled["exception"]
    assert "request_id" not in structlog.contextvars.get_contextvars()  # nothing leaked


# -- actors bind their context in init ---------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_pump_actors_lines_name_its_station_and_pump(store: Store) -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    async with (
        ModbusTcpClient("127.0.0.1", _closed_port(), timeout=0.25, max_in_flight=1) as dead,
        open_system([journal_writer_spec(store.db)], intensity=10) as system,
    ):
        journal = Journal(system, store.db)
        pump = partial(
            PumpActor, Gfd1Driver(dead, 1, nozzles=2), journal, stream_id="pump:logs.p01"
        )
        station = ChildSpec("s009", lambda: Supervisor([ChildSpec("p01", pump)]))
        await system.start_child(ChildSpec("stations", lambda: Supervisor([station])))
    (deferred,) = [line for line in lines(out) if line["event"] == "pump.recovery_deferred"]
    assert deferred["station"] == "s009" and deferred["pump"] == "stations/s009/p01"
    assert "station" not in structlog.contextvars.get_contextvars()  # the actor's own task
