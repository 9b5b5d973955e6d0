"""switch.toml: a full good file, a precise error for each bad value, env overrides, and the
dump/load round trip the demo relies on."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from channels.model import Provider
from devices.station import StationConfig
from switch.config import (
    ConfigError,
    Settings,
    SwitchConfig,
    dump_config,
    load_config,
)
from switch.config_cli import add_parser, run
from switch.pricing import PromotionBook

SECRET = "0123456789abcdef0123456789abcdef"

GOOD = f"""
[switch]
home = "var"

[database]
url = ""

[redis]
url = ""

[http]
host = "127.0.0.1"
port = 8080
public_url = ""

[auth]
secret = "{SECRET}"
token_ttl_s = 3600

[orders]
customer_pay_timeout_s = 120
unknown_budget_s = 30
sale_deadline_s = 1800
passivate_after_s = 30

[routing]
exploration_permille = 50
seed = 0

[[grades]]
code = "92"
name = "92#"
fuel = "gasoline"

[[grades]]
code = "95"
name = "95#"
fuel = "gasoline"

[[stations]]
id = "s001"
name = "People's Square"
address = "1 Renmin Ave"
lat = "31.230416"
lon = "121.473701"
timezone = "Asia/Shanghai"
opening_hours = {{ mon = [["06:00", "22:00"]], fri = [["22:00", "06:00"]] }}
gateway = "127.0.0.1:5020"
pumps = 4
nozzles = ["92", "95"]
prices = {{ "92" = 789000, "95" = 841000 }}
active_poll_s = 0.25
idle_poll_s = 1.0

[[stations]]
id = "s002"
name = "South"
lat = "-33.8688"
lon = "-151.209300"
gateway = "[::1]:5021"
pumps = 2
nozzles = ["95"]
prices = {{ "95" = 850000 }}

[[channels]]
name = "wechatpay-main"
provider = "wechatpay"
base_url = "http://127.0.0.1:9001"
merchant_id = "1900000109"
app_id = "wxd678efh567hg6787"
keys_dir = "var/keys/wechatpay/1900000109"
notify_url = ""
max_in_flight = 64
options = {{}}

[channels.routing]
methods = ["wechatpay"]
flows = ["prepay", "postpay"]
stations = ["*"]
fee = {{ rate_ppm = 6000, fixed_mfen = 0, min_mfen = 0, max_mfen = 0 }}
tiers = [ {{ from_fen = 50000, rate_ppm = 5000 }} ]
outages = [ {{ start = "2026-11-22T01:00:00+08:00", end = "2026-11-22T03:00:00+08:00" }} ]

[[channels]]
name = "unionpay-main"
provider = "unionpay"
base_url = "http://127.0.0.1:9003"
merchant_id = "777290058110048"
keys_dir = "/srv/keys/unionpay"
notify_url = "https://pay.example.com/cb/unionpay"
options = {{ env = "sandbox" }}
limits = {{ max_connections = 8, read_timeout_s = 3 }}

[[promotions]]
code = "WELCOME5"
kind = "fixed"
value = 500
min_fen = 10000
max_discount_fen = 500

[[promotions]]
code = "DIESEL2"
kind = "percent_ppm"
value = 20000
grades = ["95"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "switch.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str = GOOD, env: dict[str, str] | None = None) -> SwitchConfig:
    return load_config(write(tmp_path, text), {} if env is None else env)


def test_full_good_file(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert config.home == tmp_path.resolve() / "var"
    assert config.database_url is None and config.redis_url is None
    assert config.http.base_url == "http://127.0.0.1:8080"
    assert config.auth.secret == SECRET.encode() and config.auth.token_ttl_s == 3600
    assert config.orders.customer_pay_timeout_s == 120.0
    assert config.routing.exploration_permille == 50
    assert [g.code for g in config.grades] == ["92", "95"]

    s001, s002 = config.stations
    assert (s001.lat_e6, s001.lon_e6) == (31_230_416, 121_473_701)
    assert (s002.lat_e6, s002.lon_e6) == (-33_868_800, -151_209_300)
    assert s001.opening_hours == {"mon": (("06:00", "22:00"),), "fri": (("22:00", "06:00"),)}
    assert s001.prices == {"92": 789_000, "95": 841_000}
    assert s002.timezone == "Asia/Shanghai" and s002.opening_hours == {}
    assert (s002.gateway_host, s002.gateway_port, s002.gateway) == ("::1", 5021, "[::1]:5021")
    assert s001.station_config() == StationConfig(
        station_id="s001", host="127.0.0.1", port=5020, units=(1, 2, 3, 4), nozzles=2
    )
    assert config.station("s002") is s002

    wechat, union = config.channels
    assert wechat.config.provider is Provider.WECHATPAY
    assert wechat.config.keys_dir == tmp_path.resolve() / "var/keys/wechatpay/1900000109"
    assert wechat.config.notify_url == "http://127.0.0.1:8080/callbacks/wechatpay"
    assert wechat.notify_url_default
    assert wechat.routing["fee"] == {
        "rate_ppm": 6000,
        "fixed_mfen": 0,
        "min_mfen": 0,
        "max_mfen": 0,
    }
    assert union.config.notify_url == "https://pay.example.com/cb/unionpay"
    assert union.config.keys_dir == Path("/srv/keys/unionpay")
    assert union.config.app_id == "" and union.config.options == {"env": "sandbox"}
    assert union.config.limits.max_connections == 8
    assert union.config.limits.read_timeout_s == 3.0
    assert union.routing == {}

    book = PromotionBook.from_mappings(config.promotions)
    assert book.codes() == ("WELCOME5", "DIESEL2")
    assert book.get("DIESEL2").grades == ("95",)


def test_minimal_file_takes_the_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, f'[auth]\nsecret = "{SECRET}"\n')
    assert config.http.port == 8080 and config.orders.sale_deadline_s == 1800.0
    assert config.stations == () and config.channels == () and config.promotions == ()
    assert config.settings() == Settings(tmp_path.resolve() / "var", None, None)


def replaced(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


BAD = [
    (replaced("port = 8080", "port = 70000"), "http.port: must be at most 65535, not 70000"),
    (replaced("port = 8080", 'port = "8080"'), "http.port: expected an integer, got '8080' (str)"),
    (
        replaced(f'secret = "{SECRET}"', 'secret = "short"'),
        "auth.secret: must be at least 32 bytes, got 5 bytes",
    ),
    (replaced(f'secret = "{SECRET}"\n', ""), "auth.secret: must be at least 32 bytes, got missing"),
    (
        replaced("token_ttl_s = 3600", "token_ttl_s = 1.5"),
        "auth.token_ttl_s: expected whole seconds, got 1.5 (float)",
    ),
    (
        replaced("customer_pay_timeout_s = 120", "customer_pay_timout_s = 120"),
        "orders.customer_pay_timout_s: unknown key; did you mean 'customer_pay_timeout_s'?",
    ),
    (
        replaced("sale_deadline_s = 1800", "sale_deadline_s = 0"),
        "orders.sale_deadline_s: must be positive and finite, not 0",
    ),
    (
        replaced("exploration_permille = 50", "exploration_permille = 1001"),
        "routing.exploration_permille: must be at most 1000, not 1001",
    ),
    (
        replaced('fuel = "gasoline"', 'fuel = "petrol"'),
        "grades[0].fuel: 'petrol' is not one of gasoline, diesel, lpg, cng, other",
    ),
    (replaced('code = "95"', 'code = "92"'), "grades[1].code: grade '92' is configured twice"),
    (
        replaced('"92" = 789000', '"92" = 7.89'),
        "stations[0].prices.92: expected an integer (milli-fen per litre), got 7.89 (float)",
    ),
    (replaced('"92" = 789000', '"92" = 0'), "stations[0].prices.92: must be at least 1, not 0"),
    (replaced(', "95" = 841000 }', " }"), "stations[0].prices: no price for grade '95' (nozzle 2)"),
    (
        replaced('prices = { "95" = 850000 }', 'prices = { "95" = 850000, "92" = 1 }'),
        "stations[1].prices.92: no nozzle of this station sells it",
    ),
    (
        replaced('nozzles = ["92", "95"]', 'nozzles = ["92", "98"]'),
        "stations[0].nozzles[1]: unknown grade '98'",
    ),
    (
        replaced('lat = "31.230416"', 'lat = "31.2304161"'),
        "stations[0].lat: '31.2304161' has more than 6 decimal places",
    ),
    (
        replaced('lat = "31.230416"', "lat = 31.230416"),
        'stations[0].lat: expected a decimal string such as "31.230416", got 31.230416 (float)',
    ),
    (replaced('lon = "121.473701"', 'lon = "181"'), "stations[0].lon: 181 is outside -180..180"),
    (
        replaced('lat = "31.230416"', 'lat = "north"'),
        "stations[0].lat: 'north' is not a decimal number",
    ),
    (
        replaced('timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"'),
        "stations[0].timezone: unknown time zone 'Mars/Olympus'",
    ),
    (
        replaced('mon = [["06:00", "22:00"]]', 'mon = [["06:00", "25:00"]]'),
        "stations[0].opening_hours.mon[0]: '25:00' is not a time \"HH:MM\" (00:00-24:00)",
    ),
    (
        replaced('mon = [["06:00", "22:00"]]', 'monday = [["06:00", "22:00"]]'),
        "stations[0].opening_hours.monday: not a day (valid: mon, tue, wed, thu, fri, sat, sun)",
    ),
    (
        replaced('gateway = "127.0.0.1:5020"', 'gateway = "127.0.0.1"'),
        "stations[0].gateway: expected \"host:port\", got '127.0.0.1'",
    ),
    (replaced("pumps = 4", "pumps = 0"), "stations[0].pumps: must be at least 1, not 0"),
    (replaced('id = "s002"', 'id = "s001"'), "stations[1].id: station 's001' is configured twice"),
    (
        replaced('id = "s002"', 'id = "s 2"'),
        "stations[1].id: 's 2' must be 1-32 of A-Z a-z 0-9 _ -",
    ),
    (
        replaced("pumps = 2", "pumps = 2\npump = 3"),
        "stations[1].pump: unknown key; did you mean 'pumps'?",
    ),
    (
        replaced('provider = "wechatpay"', 'provider = "paypal"'),
        "channels[0].provider: 'paypal' is not one of wechatpay, alipay, unionpay",
    ),
    (
        replaced('name = "unionpay-main"', 'name = "wechatpay-main"'),
        "channels[1].name: channel 'wechatpay-main' is configured twice",
    ),
    (
        replaced('options = { env = "sandbox" }', "options = { env = 1 }"),
        "channels[1].options.env: expected a string, got 1 (int)",
    ),
    (
        replaced('notify_url = ""', 'notify_url = "ftp://x"'),
        "channels[0].notify_url: expected an http:// or https:// URL, got 'ftp://x'",
    ),
    (
        replaced("value = 500", "value = 5.0"),
        "promotions[0].value: expected an integer (money is integer fen), got 5.0",
    ),
    (
        replaced('kind = "fixed"', 'kind = "free"'),
        "promotions[0].kind: 'free' is not one of fixed, percent_ppm",
    ),
    (replaced('grades = ["95"]', 'grades = ["98"]'), "promotions[1].grades[0]: unknown grade '98'"),
    (
        replaced("value = 20000", "value = 2000000"),
        "promotions[1].value: at most 1000000 ppm (100 %), not 2000000",
    ),
    (replaced("[redis]", "[cache]"), "cache: unknown key"),
    (
        f'stations = 1\n[auth]\nsecret = "{SECRET}"',
        "stations: expected an array of tables ([[stations]])",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_each_bad_value_names_its_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        load(tmp_path, text)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", {})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path, 'code = "92"; name = "92#"')


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "FUELSWITCH_HOME": str(tmp_path / "elsewhere"),
        "FUELSWITCH_DATABASE_URL": "postgresql://db/fuel",
        "FUELSWITCH_REDIS_URL": "redis://cache/0",
        "FUELSWITCH_HTTP_HOST": "0.0.0.0",
        "FUELSWITCH_HTTP_PORT": "9090",
        "FUELSWITCH_AUTH_SECRET": "z" * 40,
    }
    config = load(tmp_path, env=env)
    assert config.home == tmp_path / "elsewhere"
    assert config.database_url == "postgresql://db/fuel" and config.redis_url == "redis://cache/0"
    assert (config.http.host, config.http.port) == ("0.0.0.0", 9090)
    assert config.auth.secret == b"z" * 40
    assert config.channels[0].config.notify_url == "http://0.0.0.0:9090/callbacks/wechatpay"

    public = load(tmp_path, env={"FUELSWITCH_PUBLIC_URL": "https://fuel.example.com/"})
    assert public.http.base_url == "https://fuel.example.com"
    assert public.channels[0].config.notify_url == "https://fuel.example.com/callbacks/wechatpay"
    assert public.channels[1].config.notify_url == "https://pay.example.com/cb/unionpay"

    with pytest.raises(
        ConfigError, match=r"^FUELSWITCH_HTTP_PORT: expected a port 0\.\.65535, got 'x'"
    ):
        load(tmp_path, env={"FUELSWITCH_HTTP_PORT": "x"})
    with pytest.raises(ConfigError, match=r"^FUELSWITCH_AUTH_SECRET: must be at least 32 bytes"):
        load(tmp_path, env={"FUELSWITCH_AUTH_SECRET": "short"})
    assert load(tmp_path, env={"FUELSWITCH_HOME": ""}).home == tmp_path.resolve() / "var"


def test_with_http_rederives_default_notify_urls(tmp_path: Path) -> None:
    config = load(tmp_path).with_http(port=45678)
    assert config.http.port == 45678
    assert config.channels[0].config.notify_url == "http://127.0.0.1:45678/callbacks/wechatpay"
    assert config.channels[1].config.notify_url == "https://pay.example.com/cb/unionpay"


def test_dump_then_load_is_the_same_config(tmp_path: Path) -> None:
    config = load(tmp_path)
    other_dir = tmp_path / "copy"
    other_dir.mkdir()
    dumped = write(other_dir, dump_config(config))
    again = load_config(dumped, {})
    assert again == config
    assert dump_config(again) == dump_config(config)


def test_dump_round_trips_awkward_values(tmp_path: Path) -> None:
    text = replaced('address = "1 Renmin Ave"', 'address = "Line \\"A\\"\\n\\u007f\\\\ 人民广场"')
    text = text.replace(
        'stations = ["*"]', 'stations = ["*"]\nweird = { "a key" = 1e-5, b = true }'
    )
    config = load(tmp_path, text).with_http(public_url="https://x.example.com")
    assert config.stations[0].address == 'Line "A"\n\x7f\\ 人民广场'
    out = tmp_path / "out"
    out.mkdir()
    assert load_config(write(out, dump_config(config)), {}) == config


def test_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    path = write(tmp_path, GOOD)
    assert run(parser.parse_args(["config", "check", str(path)])) == 0
    out = capsys.readouterr().out
    assert "ok: 2 grades, 2 stations, 6 pumps, 2 channels, 2 promotions" in out
    assert run(parser.parse_args(["config", "show", str(path)])) == 0
    assert "[[stations]]" in capsys.readouterr().out
    write(tmp_path, replaced("pumps = 4", "pumps = 0"))
    assert run(parser.parse_args(["config", "check", str(path)])) == 2
    assert "stations[0].pumps: must be at least 1, not 0" in capsys.readouterr().err


def test_operations_sections(tmp_path: Path) -> None:
    base = f'[auth]\nsecret = "{SECRET}"\n'
    defaults = load(tmp_path, base)
    assert defaults.admin_socket == tmp_path.resolve() / "var/admin.sock"
    assert defaults.audit_log == tmp_path.resolve() / "var/audit.log"
    assert defaults.admin.allowed_uids == ()
    assert (defaults.logging.format, defaults.logging.level) == ("auto", "info")
    assert defaults.shutdown.grace_s == 30.0
    text = base + (
        '[admin]\nsocket = "run/ops.sock"\nallowed_uids = [1000, 1001]\n'
        'audit_log = "/var/log/fuelswitch-audit.log"\n'
        '[logging]\nformat = "json"\nlevel = "warning"\n[shutdown]\ngrace_s = 12\n'
    )
    config = load(tmp_path, text)
    assert config.admin_socket == tmp_path.resolve() / "run/ops.sock"
    assert config.admin.allowed_uids == (1000, 1001)
    assert config.audit_log == Path("/var/log/fuelswitch-audit.log")
    assert (config.logging.format, config.logging.level) == ("json", "warning")
    assert config.shutdown.grace_s == 12.0
    env = {
        "FUELSWITCH_ADMIN_SOCKET": "/tmp/fs.sock",
        "FUELSWITCH_LOG_FORMAT": "console",
        "FUELSWITCH_LOG_LEVEL": "DEBUG",
    }
    overridden = load(tmp_path, text, env)
    assert overridden.admin_socket == Path("/tmp/fs.sock")
    assert (overridden.logging.format, overridden.logging.level) == ("console", "debug")
    assert load_config(write(tmp_path, dump_config(config)), {}) == config


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[admin]\nallowed_uids = ["root"]\n', "admin.allowed_uids: expected a list of uids"),
        ('[logging]\nformat = "xml"\n', "logging.format: expected one of auto, json, console"),
        ('[logging]\nlevel = "chatty"\n', "logging.level: expected one of debug"),
        ("[shutdown]\ngrace_s = 0\n", "shutdown.grace_s: must be positive"),
        ("[admin]\nport = 1\n", "admin.port"),
    ],
)
def test_bad_operations_values(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(tmp_path, f'[auth]\nsecret = "{SECRET}"\n' + section)


def test_admission_bounds(tmp_path: Path) -> None:
    defaults = load(tmp_path)
    assert (defaults.orders.max_open, defaults.orders.max_lag_ms) == (2000, 500)
    assert defaults.orders.max_creating == 16
    assert defaults.orders.max_store_ms == 250
    text = replaced(
        "passivate_after_s = 30", "passivate_after_s = 30\nmax_open = 1\nmax_lag_ms = 0"
    )
    config = load(tmp_path, text)
    assert (config.orders.max_open, config.orders.max_lag_ms) == (1, 0)
    assert "max_open = 1" in dump_config(config)
    assert load_config(write(tmp_path, dump_config(config)), {}).orders == config.orders
    env = {
        "FUELSWITCH_ORDERS_MAX_OPEN": "7",
        "FUELSWITCH_ORDERS_MAX_CREATING": "3",
        "FUELSWITCH_ORDERS_MAX_LAG_MS": "250",
    }
    overridden = load(tmp_path, text, env=env)
    assert (overridden.orders.max_open, overridden.orders.max_lag_ms) == (7, 250)
    assert overridden.orders.max_creating == 3
    with pytest.raises(
        ConfigError,
        match=r"^FUELSWITCH_ORDERS_MAX_OPEN: expected an integer >= 0 \(0: no bound\), got '-1'",
    ):
        load(tmp_path, env={"FUELSWITCH_ORDERS_MAX_OPEN": "-1"})
    with pytest.raises(ConfigError, match=r"^orders\.max_open: must be at least 0, not -1"):
        load(tmp_path, replaced("passivate_after_s = 30", "passivate_after_s = 30\nmax_open = -1"))
    with pytest.raises(ConfigError, match=r"^orders\.max_lag_ms: expected an integer, got 0\.5"):
        load(
            tmp_path, replaced("passivate_after_s = 30", "passivate_after_s = 30\nmax_lag_ms = 0.5")
        )
