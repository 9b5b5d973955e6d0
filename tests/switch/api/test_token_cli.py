"""``fuelswitch token``: argument parsing and the printed token (parser wired here as the lead
will wire it into ``switch.cli``)."""

from __future__ import annotations

import argparse

import pytest

from switch.api import Role, TokenSigner
from switch.api.token_cli import add_parser, run
from tests.switch.api.harness import START

SECRET = "s" * 40


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fuelswitch")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["token", *argv])


def test_a_customer_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FUELSWITCH_AUTH_SECRET", SECRET)
    args = _parse("--customer", "c42", "--ttl", "60")
    assert args.func is run
    assert run(args) == 0
    token = capsys.readouterr().out.strip()
    principal = TokenSigner(SECRET.encode()).verify(token, START)  # issued now, START earlier
    assert (principal.subject, principal.role) == ("c42", Role.CUSTOMER)
    assert principal.expires_at - principal.issued_at == 60


def test_a_staff_token_from_another_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTHER_SECRET", SECRET)
    args = _parse(
        "--staff", "st1", "--station", "s001", "--station", "s002", "--secret-env", "OTHER_SECRET"
    )
    assert run(args) == 0
    principal = TokenSigner(SECRET.encode()).verify(capsys.readouterr().out.strip(), START)
    assert principal.role is Role.STAFF and principal.stations == frozenset({"s001", "s002"})


def test_refusals(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("FUELSWITCH_AUTH_SECRET", raising=False)
    assert run(_parse("--customer", "c1")) == 2
    assert "FUELSWITCH_AUTH_SECRET is not set" in capsys.readouterr().err
    monkeypatch.setenv("FUELSWITCH_AUTH_SECRET", "short")
    assert run(_parse("--customer", "c1")) == 2
    assert "at least 32 bytes" in capsys.readouterr().err
    monkeypatch.setenv("FUELSWITCH_AUTH_SECRET", SECRET)
    assert run(_parse("--staff", "st1")) == 2
    assert "--station" in capsys.readouterr().err
    assert run(_parse("--customer", "c1", "--station", "s001")) == 2
    assert run(_parse("--customer", "c1", "--ttl", "0")) == 2
    with pytest.raises(SystemExit):
        _parse("--customer", "c1", "--staff", "st1")
