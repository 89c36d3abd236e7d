"""Moved to ``app.scheduler.heartbeat`` (the scheduler owns the lease rule); this name stays until
``delivery.py`` and ``acme/runner.py`` import it from there."""

from app.scheduler.heartbeat import Heartbeat, LeaseLost, heartbeat_interval

__all__ = ["Heartbeat", "LeaseLost", "heartbeat_interval"]
