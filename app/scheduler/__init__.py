"""The application's scheduler: one worker loop running every kind of background job under one
lease rule (``lease.py``, renewed by ``heartbeat.py``). ``worker.py`` holds the loop; the jobs
themselves live with their features (deliveries, orders, renewals, webhooks, expiry notices)."""
