"""Webhooks: subscriptions to the event log, delivered signed (Standard Webhooks 1.0) by the worker."""
