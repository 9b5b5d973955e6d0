"""The switch's side of payments: provider callbacks into the books (and, later, the router)."""

from switch.payments.callbacks import (
    AppliedCallback,
    CallbackHook,
    CallbackProcessor,
    problem_reply,
    routing_keys,
)

__all__ = ["AppliedCallback", "CallbackHook", "CallbackProcessor", "problem_reply", "routing_keys"]
