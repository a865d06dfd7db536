"""One test database per concurrently running mutant: mutmut runs several mutants at once (``--max-children``),
each in its own pytest session, and two sessions on one test database would see each other's committed rows.

A session takes the first free slot (an exclusive lock on a file, held until the process exits) and uses the
test database ``<name>_m<slot>``, created on first use and then reused (``--reuse-db``)."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

from django.conf import settings

_held: list[int] = []  # the locked file descriptor lives as long as the process


def take_slot(slots: int) -> int:
    db = settings.DATABASES["default"]
    base = db.get("TEST", {}).get("NAME") or f"test_{db['NAME']}"
    folder = Path(tempfile.gettempdir()) / "waybill-mutation-slots"
    folder.mkdir(exist_ok=True)
    for slot in range(slots):
        fd = os.open(folder / f"{base}-{slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held.append(fd)
        db.setdefault("TEST", {})["NAME"] = f"{base}_m{slot}"
        return slot
    raise RuntimeError(f"all {slots} mutation test database slots are taken; lower --max-children")
