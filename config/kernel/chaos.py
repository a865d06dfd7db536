"""Crash points for the chaos scenarios (tests/chaos, `make chaos`): a process started with
``WAYBILL_CRASH_AT=<name>`` exits at once, without cleanup, when it reaches ``crash_point(<name>)``, as a
SIGKILL or a power cut would stop it there. Unset (always, outside those scenarios), a crash point does nothing.

Named points: ``outbox.sent`` (channels/outbox.py: the channel has the message, the outbox does not know yet).
"""

from __future__ import annotations

import os

CRASH_EXIT_CODE = 87


def crash_point(name: str) -> None:
    if os.environ.get("WAYBILL_CRASH_AT") == name:
        os._exit(CRASH_EXIT_CODE)
