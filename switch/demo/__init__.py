"""``fuelswitch demo``: the whole forecourt on one machine, and an audit of its books.

``add_parser`` / ``run`` are what ``switch.cli`` wires up; ``run_demo`` is the trio entry
point; the pieces (process handling, simulator controls, customers, report) are modules of
their own.
"""

from .cli import add_parser, run
from .runner import DemoOptions, run_demo

__all__ = ["DemoOptions", "add_parser", "run", "run_demo"]
