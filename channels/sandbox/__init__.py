"""Sandbox marketplaces: local HTTP servers speaking each channel's wire format.

One module per channel kind, registered with its demo port (the port the demo accounts use) in
channels.registry.
"""

from __future__ import annotations

from importlib import import_module

from channels.registry import MARKETPLACES

SANDBOXES: dict[str, tuple[str, int]] = {m.kind: (m.sandbox, m.demo_port) for m in MARKETPLACES}


def sandbox_class(kind: str):
    path, _ = SANDBOXES[kind]
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)
