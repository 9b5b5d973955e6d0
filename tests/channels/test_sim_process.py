"""``fuelswitch sim providers`` as a process: the ready line, the keys subcommand, keys kept
across restarts, clean exits."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.channels.provider_sim import ROOT, SAFE, ProviderSimProcess

PROVIDERS = ("wechatpay", "alipay", "unionpay")


@pytest.fixture(scope="module")
def provider_sim_args() -> tuple[str, ...]:
    return ("--clock-scale", "3600", "--seed", "5")


def fingerprint(keys: Path) -> dict[str, str]:
    """Every file under the keys root and a hash of its content."""
    return {
        str(p.relative_to(keys)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(keys.rglob("*"))
        if p.is_file()
    }


def test_the_ready_line_names_every_server(provider_sim: ProviderSimProcess) -> None:
    ready = provider_sim.ready
    assert ready["keys"] == str(provider_sim.home / "keys")
    for name in (*PROVIDERS, "control"):
        assert ready[name].startswith("http://127.0.0.1:"), name
    assert len({ready[name] for name in (*PROVIDERS, "control")}) == 4
    assert ready["merchants"] == {
        "wechatpay": [{"merchant_id": "1900000109", "app_id": "wxd678efh567hg6787"}],
        "alipay": [{"merchant_id": "2088123456789012", "app_id": "2021000000000001"}],
        "unionpay": [{"merchant_id": "777290058110048", "app_id": ""}],
    }
    health = provider_sim.control.raw("GET", "/health").json()
    assert health == {"ok": True, "providers": list(PROVIDERS)}
    for name in PROVIDERS:  # each provider's own server answers HTTP
        reply = httpx.get(ready[name] + "/no-such-endpoint", timeout=SAFE)
        assert reply.status_code >= 400, name
    assert provider_sim.control.clock()["scale"] == 3600.0


def test_the_material_names_each_merchants_keys(provider_sim: ProviderSimProcess) -> None:
    material = provider_sim.control.material()
    assert material["keys"] == provider_sim.ready["keys"]
    for name in PROVIDERS:
        text = json.dumps(material[name])
        for merchant in provider_sim.ready["merchants"][name]:
            assert merchant["merchant_id"] in text, name
    assert fingerprint(provider_sim.keys)  # the keys exist on disk


def test_keys_subcommand_generates_and_every_start_reuses_them(tmp_path: Path) -> None:
    process = ProviderSimProcess("--merchants", "2", home=tmp_path)
    printed = process.keys_command("--merchants", "2")
    keys = tmp_path / "keys"
    assert printed["keys"] == str(keys)
    before = fingerprint(keys)
    assert before
    assert process.keys_command("--merchants", "2") == printed  # idempotent
    assert fingerprint(keys) == before
    for _ in range(2):
        ready = process.start()
        assert ready["keys"] == str(keys)
        assert [m["merchant_id"] for m in ready["merchants"]["wechatpay"]] == [
            "1900000109",
            "1900000110",
        ]
        assert [m["merchant_id"] for m in ready["merchants"]["alipay"]] == [
            "2088123456789012",
            "2088123456789013",
        ]
        assert process.control.material() == printed
        assert process.terminate() == 0
        assert fingerprint(keys) == before


def test_sigint_stops_it_cleanly_too(tmp_path: Path) -> None:
    process = ProviderSimProcess(home=tmp_path)
    process.start()
    assert process.proc is not None
    process.proc.send_signal(signal.SIGINT)
    assert process.proc.wait(SAFE * 3) == 0
    process.kill()


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", "sim", "providers", *args],
        cwd=ROOT,
        env={**ProviderSimProcess(home=home).env()},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--clock-scale", "0"), "clock scale"),
        (("--merchants", "0"), "merchants"),
        (("--wechatpay-port", "70000"), "port"),
    ],
)
def test_bad_arguments_exit_1_with_a_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = run_cli(*args, home=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_exits_1_with_a_message(provider_sim: ProviderSimProcess) -> None:
    port = provider_sim.ready["control"].rsplit(":", 1)[1]
    done = run_cli("--control-port", port, home=provider_sim.home)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "fuelswitch sim providers:" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_fault_middleware_wraps_every_provider(
    provider_sim: ProviderSimProcess, provider: str
) -> None:
    control = provider_sim.control
    control.set_faults(provider, error_rate=1.0, error_status=502)
    try:
        reply = httpx.post(provider_sim.url(provider) + "/any", content=b"x=1", timeout=SAFE)
    finally:
        control.set_faults(provider)
    assert reply.status_code == 502
    assert reply.content  # the provider's own error body
    assert reply.headers["content-type"]
    assert httpx.post(provider_sim.url(provider) + "/any", timeout=SAFE).status_code != 502
