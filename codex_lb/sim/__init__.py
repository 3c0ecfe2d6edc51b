"""An emulated ChatGPT (Codex) backend and OAuth server for tests and demos.

It serves the upstream routes codex-lb calls (responses, compact, models,
usage, the token endpoint and both login flows) for a set of accounts whose
5 h and weekly windows fill with the priced cost of each request and reset
on an emulated clock. Faults queued per account make the next request fail
in a chosen way. It imports nothing of codex-lb but `codex_lb.constants`.

    emu = Emulator([SimAccount.make("a@example.com", plan="plus")])
    await emu.start()
    ...  # point CODEX_LB_UPSTREAM_BASE_URL at emu.upstream_base_url
    await emu.close()
"""

from __future__ import annotations

from .emulator import Emulator, RecordedRequest
from .faults import Fault
from .state import SimAccount, SimClock, Window, price_for, request_cost
from .tokens import decode_jwt, encode_jwt

__all__ = [
    "Emulator",
    "Fault",
    "RecordedRequest",
    "SimAccount",
    "SimClock",
    "Window",
    "decode_jwt",
    "encode_jwt",
    "price_for",
    "request_cost",
]
