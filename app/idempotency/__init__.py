"""Safe retries of creating POSTs with ``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header)."""
