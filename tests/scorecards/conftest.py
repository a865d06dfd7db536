"""The Amazon sandbox and an account pointed at it, shared with tests/channels (real HTTP on loopback)."""

from tests.channels.conftest import amazon_account, amazon_sandbox, fast_backoff, serve_sandbox

__all__ = ["amazon_account", "amazon_sandbox", "fast_backoff", "serve_sandbox"]
