"""`python -m tests.chaos.relay_kills ACCOUNT_ID KILLS`: the outbox relay killed between send and mark, KILLS times.

Each round forks a relay that claims one due message, sends it to the channel and exits at the crash point
``outbox.sent`` (config/kernel/chaos.py) before marking it sent, as a SIGKILL there would. The parent counts the
kills and prints them as JSON. Forking from a process with Django loaded makes a round cost milliseconds, not a
Python start; every child opens its own database connection.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback


def _warm_up(account_id: int) -> None:
    """Import and build once, in the parent, what every child would otherwise load for itself (the cache
    client, the connector and its HTTP stack): the children inherit it. The redis client's pool notices the
    fork and reconnects; the database connection is closed before every fork."""
    import httpx
    from django.core.cache import cache

    from channels.models import ChannelAccount
    from channels.services import connector_for

    cache.get("waybill:chaos:warm-up")
    httpx.Client().close()  # the transport's modules load on first use
    connector_for(ChannelAccount.objects.get(pk=account_id)).close()


def main(argv: list[str]) -> int:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.db import connections

    from channels.outbox import outbox_relay
    from config.kernel.chaos import CRASH_EXIT_CODE

    account_id, kills = int(argv[0]), int(argv[1])
    _warm_up(account_id)
    started = time.monotonic()
    crashed = 0
    other: list[int] = []
    for _ in range(kills):
        connections.close_all()  # the child must not share the parent's socket
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.environ["WAYBILL_CRASH_AT"] = "outbox.sent"
                outbox_relay(account_id=account_id, batch=1, budget_seconds=30)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)  # reached only when nothing was due, or on an error
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == CRASH_EXIT_CODE:
            crashed += 1
        else:
            other.append(code)
            break
    elapsed = round(time.monotonic() - started, 1)
    print(json.dumps({"killed": crashed, "other_exits": other, "seconds": elapsed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
