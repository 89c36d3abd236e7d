"""Retention: the event log, webhook deliveries and deployment history pruned by the worker."""
