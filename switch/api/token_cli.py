"""``fuelswitch token``: print a bearer token for a customer or a staff member.

For operators and tests: the mini-program's login issues customer tokens in production, but a
staff member's token for a station (or ``*``) is made here, from the same secret the switch
verifies with (``FUELSWITCH_AUTH_SECRET``, or the variable ``--secret-env`` names).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .auth import MIN_SECRET_BYTES, Role, TokenSigner

__all__ = ["DEFAULT_SECRET_ENV", "add_parser", "run"]

DEFAULT_SECRET_ENV = "FUELSWITCH_AUTH_SECRET"
DEFAULT_TTL_S = 3600


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "token",
        help="print a bearer token for the customer and station API",
        description="Print a signed bearer token for the /v1 API: a customer's, or a staff "
        f"member's for some stations ('*': all). The secret is read from ${DEFAULT_SECRET_ENV} "
        f"(at least {MIN_SECRET_BYTES} bytes).",
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", metavar="ID", help="a customer token for this customer id")
    who.add_argument("--staff", metavar="ID", help="a staff token for this staff id")
    parser.add_argument(
        "--station",
        action="append",
        default=[],
        metavar="S",
        help="a station the staff member manages (repeatable; '*' for every station)",
    )
    parser.add_argument(
        "--ttl", type=int, default=DEFAULT_TTL_S, metavar="S", help="lifetime in seconds"
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="take the secret (and the default lifetime) from this switch.toml instead",
    )
    parser.add_argument(
        "--secret-env",
        default=DEFAULT_SECRET_ENV,
        metavar="VAR",
        help=f"the environment variable holding the secret (default {DEFAULT_SECRET_ENV})",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    secret = os.environ.get(args.secret_env, "")
    if args.config is not None:
        from switch.config import ConfigError, load_config

        try:
            secret = load_config(args.config).auth.secret.decode()
        except (ConfigError, OSError) as exc:
            print(f"fuelswitch token: {exc}", file=sys.stderr)
            return 2
    if not secret:
        print(f"fuelswitch token: ${args.secret_env} is not set", file=sys.stderr)
        return 2
    if args.staff is not None and not args.station:
        print("fuelswitch token: --staff needs at least one --station", file=sys.stderr)
        return 2
    if args.customer is not None and args.station:
        print("fuelswitch token: --station applies to --staff only", file=sys.stderr)
        return 2
    try:
        signer = TokenSigner(secret.encode())
        if args.customer is not None:
            token = signer.issue(args.customer, Role.CUSTOMER, ttl_s=args.ttl, now=time.time())
        else:
            token = signer.issue(
                args.staff, Role.STAFF, stations=args.station, ttl_s=args.ttl, now=time.time()
            )
    except ValueError as invalid:
        print(f"fuelswitch token: {invalid}", file=sys.stderr)
        return 2
    print(token)
    return 0
