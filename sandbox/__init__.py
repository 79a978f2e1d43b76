"""An offline, stateful Stripe stand-in (HTTP server) for development and tests; see docs/sandbox.md."""

from sandbox.server import RunningSandbox, SandboxConfig, create_app, main, run_in_thread

__all__ = ["RunningSandbox", "SandboxConfig", "create_app", "main", "run_in_thread"]
