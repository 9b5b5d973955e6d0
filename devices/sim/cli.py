"""``fuelswitch sim pumps``: the dispenser simulator as a process of its own.

``switch/cli.py`` defines the arguments and imports this module only when the command
runs. Once every port listens, one JSON line goes to stdout (the ports, the RTU line, the
DART line, the control port, the pid) for the test or load test that started the process to read;
logs go to stderr, so stdout carries nothing else. SIGTERM or SIGINT stops the process
cleanly, writing the state file a last time; the exit status is then 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import serial

from devices.gfd1.states import Mode
from devices.modbus.rtu_codec import Parity, SerialSettings
from ops.process import configure_stderr_logs, run_until_signal

from .service import ServiceConfig, SimulatorService
from .simulation import SimConfig


def config_from_args(args: argparse.Namespace) -> ServiceConfig:
    """The service configuration; ValueError for arguments that make no sense."""
    sim = SimConfig(
        stations=args.stations,
        pumps_per_station=args.pumps_per_station,
        nozzles=args.nozzles,
        seed=args.seed,
        customers_per_minute=args.random_customers,
        patience_s=args.patience,
        mode=Mode.STAND_ALONE if args.mode == "stand-alone" else Mode.HOST_CONTROLLED,
    )
    if not 0 <= args.port_base <= 65535 - args.stations:
        raise ValueError("--port-base leaves no room for the stations")
    if args.control_port is not None and not 0 <= args.control_port <= 65535:
        raise ValueError("--control-port must be 0..65535")
    rtu = None
    if args.rtu is not None:
        rtu = SerialSettings(args.rtu, args.rtu_baudrate, parity=Parity(args.rtu_parity))
    dart = None
    if args.dart is not None:
        dart = SerialSettings(args.dart, args.dart_baudrate, parity=Parity(args.dart_parity))
    return ServiceConfig(
        sim=sim,
        host=args.host,
        port_base=args.port_base,
        control_port=args.control_port,
        rtu=rtu,
        dart=dart,
        dart_pumps=args.dart_pumps,
        state=Path(args.state) if args.state is not None else None,
        tick_s=args.tick,
        speed=args.speed,
    )


def run_pumps(args: argparse.Namespace) -> int:
    configure_stderr_logs(args.verbose)
    return run_until_signal(
        "fuelswitch sim pumps",
        lambda: SimulatorService(config_from_args(args)),
        (OSError, ValueError, serial.SerialException),  # at start: no ports
        "devices.sim",
    )
