"""``fuelswitch ops ...``: the operator's command line over the admin socket.

Exit status: 0 done, 1 the switch answered with an error (code and message on stderr),
2 a usage error, 3 the switch is not reachable (one line naming the socket). The
subcommands themselves are the data in :mod:`ops.verbs`; their tables are in
:mod:`ops.render`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import orjson
import trio
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from ops.admin import AdminClient, AdminReplyError, AdminUnavailable
from ops.render import render
from ops.verbs import VERBS, UsageError, Verb

__all__ = ["EXIT_ERROR", "EXIT_UNAVAILABLE", "EXIT_USAGE", "add_parser", "run", "socket_path"]

EXIT_ERROR, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3
_INTERRUPTED = 130
DEFAULT_WATCH_S = 2.0
DEFAULT_TIMEOUT_S = 30.0
_PIPE_WIDTH = 200  # not a terminal: wide rows rather than folded cells


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ops = commands.add_parser(
        "ops",
        help="operate a running switch through its admin socket",
        description="Talk to a running switch over its admin socket. The socket is --socket,"
        " else $FUELSWITCH_ADMIN_SOCKET, else the admin socket of --config FILE, else"
        " $FUELSWITCH_HOME/admin.sock (FUELSWITCH_HOME defaults to ./var). Exit status: 0 ok,"
        " 1 the switch answered with an error, 2 usage error, 3 the switch is not reachable.",
    )
    _add_globals(ops, suppress=False)
    verbs = ops.add_subparsers(dest="ops_command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for verb in VERBS:
        parent, name = verbs, verb.words[-1]
        if len(verb.words) == 2:
            head = verb.words[0]
            if head not in groups:
                actions = "|".join(v.words[1] for v in VERBS if v.words[0] == head)
                group = verbs.add_parser(head, help=f"{head} {actions} ...")
                groups[head] = group.add_subparsers(
                    dest=f"ops_{head}", required=True, metavar="ACTION"
                )
            parent = groups[head]
        leaf = parent.add_parser(name, help=verb.help, description=verb.help)
        for argument in verb.arguments:
            if argument.positional:
                leaf.add_argument(argument.dest, **argument.options)
            else:
                leaf.add_argument(*argument.flags, dest=argument.dest, **argument.options)
        _add_globals(leaf, suppress=True)
        leaf.set_defaults(func=run, ops_verb=verb)


def _add_globals(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global options, on ``ops`` and again on each subcommand (``ops pumps --json``).

    Subcommands default to SUPPRESS so that they never overwrite what was given before.
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    add = parser.add_argument
    add("--socket", type=Path, metavar="PATH", default=default(None), help="the admin socket")
    add("--config", type=Path, metavar="FILE", default=default(None), help="switch config file")
    add("--json", action="store_true", default=default(False), help="print the raw result")
    add(
        "--watch",
        nargs="?",
        type=float,
        const=DEFAULT_WATCH_S,
        default=default(None),
        metavar="SECONDS",
        help=f"refresh every SECONDS (default {DEFAULT_WATCH_S:g}) until Ctrl-C",
    )
    add("--count", type=int, default=default(None), help=argparse.SUPPRESS)  # --watch, for tests
    add(
        "--timeout",
        type=float,
        default=default(DEFAULT_TIMEOUT_S),
        metavar="SECONDS",
        help=f"give up on a reply after SECONDS (default {DEFAULT_TIMEOUT_S:g})",
    )


def socket_path(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if args.socket is not None:
        return Path(args.socket)
    if env.get("FUELSWITCH_ADMIN_SOCKET"):
        return Path(env["FUELSWITCH_ADMIN_SOCKET"])
    from switch.config import ConfigError, Settings, load_config

    if args.config is not None:
        try:
            return load_config(args.config, env).admin_socket
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    return Settings.from_env(env).home / "admin.sock"


def _fail(text: str, status: int) -> int:
    print(f"fuelswitch ops: {text}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    verb: Verb = args.ops_verb
    if args.watch is not None and not verb.read:
        return _fail(f"--watch is for read commands, not {' '.join(verb.words)}", EXIT_USAGE)
    if args.watch is not None and args.watch <= 0:
        return _fail("--watch SECONDS must be positive", EXIT_USAGE)
    try:
        request = verb.build(args, verb)
        path = socket_path(args)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    try:
        status: int = trio.run(_session, verb, request, args, path)
    except KeyboardInterrupt:
        return 0 if args.watch is not None else _INTERRUPTED
    return status


class _Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        console = Console()
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console = Console(width=_PIPE_WIDTH)
        self.console = console

    def json(self, result: Any) -> None:
        line = orjson.dumps(result, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
        sys.stdout.buffer.write(line + b"\n")
        sys.stdout.flush()


def _json_default(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else str(value)


async def _session(
    verb: Verb, request: dict[str, Any], args: argparse.Namespace, path: Path
) -> int:
    out = _Output(args.json)
    try:
        with trio.fail_after(args.timeout):
            client = await AdminClient.connect(path)
        async with client:
            if args.watch is None:
                with trio.fail_after(args.timeout):
                    result = await verb.fetch(client, verb, request, args)
                if out.as_json:
                    out.json(result)
                else:
                    out.console.print(render(verb.view, result, request))
            else:
                await _watch(client, verb, request, args, out)
    except AdminUnavailable as exc:
        return _fail(str(exc), EXIT_UNAVAILABLE)
    except AdminReplyError as exc:
        return _fail(f"{exc.code}: {exc.message}", EXIT_ERROR)
    except trio.TooSlowError:
        text = f"no reply from the switch on {path} within {args.timeout:g}s"
        return _fail(text, EXIT_UNAVAILABLE)
    return 0


async def _watch(
    client: AdminClient,
    verb: Verb,
    request: dict[str, Any],
    args: argparse.Namespace,
    out: _Output,
) -> None:
    """Refresh until Ctrl-C (or ``--count`` refreshes): in place on a terminal, else one
    rendering after another."""
    live = not out.as_json and out.console.is_terminal
    shown = 0
    with Live(console=out.console, auto_refresh=False) if live else nullcontext() as display:
        while True:
            with trio.fail_after(args.timeout):
                result = await verb.fetch(client, verb, request, args)
            shown += 1
            if out.as_json:
                out.json(result)
            else:
                caption = Text(
                    f"{' '.join(verb.words)} every {args.watch:g}s (Ctrl-C to stop)", style="dim"
                )
                view = Group(caption, render(verb.view, result, request))
                if isinstance(display, Live):
                    display.update(view, refresh=True)
                else:
                    out.console.print(view)
            if args.count is not None and shown >= args.count:
                return
            await trio.sleep(args.watch)
