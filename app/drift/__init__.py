"""Drift: what each server's ports were last seen serving, next to what they should serve.

The agent probes its ports on a schedule (app/agent/drift.py); the worker reads what it saw
(``poll.py``), stores it (``models.py``), raises an event when a port stops or starts serving
what the agent applied, and schedules a repair delivery (``rules.repair_due``). The domain TLS
status shows it per service and port (``observed``).
"""
