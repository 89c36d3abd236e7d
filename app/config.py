"""Settings, read from the environment with the prefix ``CERTPOST_``.

Nothing reads the environment at import: ``get_settings()`` is called by the CLI and by
``create_app()``; tests build ``Settings(...)`` directly and hand it over.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.kit.outbound import IPNetwork, parse_networks


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/certpost``, else ``~/.local/share/certpost`` (XDG Base Directory
    Specification): one place per user whatever the current directory, so `certpost tokens`
    typed in another directory finds the database `certpost serve` uses. It was ``./data``,
    which made a second, empty database wherever a command ran (issue 9). Services set
    CERTPOST_DATA_DIR (deploy/*.service: /var/lib/certpost; the Docker image: /data)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"  # the spec ignores relative
    return base / "certpost"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CERTPOST_", extra="ignore")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded database and keys live; default $XDG_DATA_HOME/certpost "
        "(~/.local/share/certpost). A relative path is taken from the current directory.",
    )
    host: str = Field("127.0.0.1", description="Address `certpost serve` listens on (`serve --host` wins).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port `certpost serve` listens on (`serve --port` wins).")
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default: SQLite file certpost.db in data_dir."
    )
    master_key_file: Path | None = Field(
        None, description="32-byte key that wraps every private key's data key; default data_dir/master.key."
    )
    trust_bundle: Path | None = Field(
        None, description="PEM file of extra trusted roots, added to certifi's Mozilla roots."
    )
    controller_key_file: Path | None = Field(
        None, description="Ed25519 key that signs pushes to agents; default data_dir/controller.key."
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate (leaf first, then its chain) for `certpost serve` to serve HTTPS; "
        "with tls_key_file. Unset: plain HTTP (behind a TLS-terminating reverse proxy, say).",
    )
    tls_key_file: Path | None = Field(None, description="The PEM private key of tls_cert_file.")
    public_url: str | None = Field(
        None, description="The controller's URL as agents reach it (e.g. https://certpost.example.net:8443), "
        "printed in the enrolment command; default: the URL the admin's request came to.",
    )
    enrolment_token_seconds: int = Field(
        3600, ge=60, le=7 * 86400, description="Default lifetime of an agent enrolment token.")
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    expiring_days: int = Field(30, ge=0, description="Binding warns when the certificate expires sooner.")
    token_cache_seconds: float = Field(
        5.0, ge=0, description="How long a process remembers an authenticated API token (by its SHA-256) "
        "instead of looking it up again; 0 disables. A token revoked through another process (a second "
        "`certpost serve`, `certpost tokens revoke`) keeps working here for at most this long.",
    )
    run_worker: bool = Field(True, description="Run the deployment worker inside `certpost serve`.")
    worker_poll_seconds: float = Field(1.0, gt=0)
    lease_seconds: float = Field(
        20.0, gt=0, description="A worker's claim on a delivery or an order, renewed every quarter of it "
        "while the work runs; a crashed worker's work is taken over once it runs out.",
    )
    retry_base_seconds: float = Field(5.0, gt=0)
    retry_max_seconds: float = Field(600.0, gt=0)
    agent_timeout_seconds: float = Field(120.0, gt=0)
    dovecot_capacity: int = Field(
        1500,
        ge=1,
        description="Per-domain mail certificates per server above which a warning shows "
        "(Dovecot 2.3 stays under 5 s per change up to about this many; docs/performance.md).",
    )

    # Operations: logs and Prometheus metrics (docs/operations.md)
    log_format: Literal["json", "text"] = Field(
        "json", description="`certpost serve`/`worker`/`agent` log lines: one JSON object per line, or "
        "plain text (`--log-format` wins). Other commands log text unless this is set.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token Prometheus sends to read GET /metrics (a setting of its own, never an "
        "API token; at least 24 characters, e.g. `openssl rand -hex 32`). Unset: /metrics does not exist.",
    )
    metrics_cache_seconds: float = Field(
        60.0, ge=0, description="How long the database figures of /metrics are reused between scrapes "
        "(reading them costs seconds at 100,000 certificates: docs/performance.md, section 13).")

    # ACME (RFC 8555)
    acme_directory_url: str = Field(
        "https://acme-v02.api.letsencrypt.org/directory", description="The ACME CA's directory."
    )
    acme_email: str | None = Field(None, description="Contact address for the ACME account.")
    acme_ca_bundle: Path | None = Field(None, description="PEM roots to trust for the CA's own HTTPS.")
    acme_eab_kid: str | None = Field(None, description="External Account Binding key id.")
    acme_eab_hmac_key: str | None = Field(None, description="External Account Binding HMAC key (base64url).")
    acme_propagation_timeout: float = Field(300.0, gt=0, description="Longest wait for TXT records to show.")
    acme_propagation_interval: float = Field(
        5.0, gt=0, description="Longest wait between TXT checks (the first re-check comes after 0.2 s, then doubles).")
    acme_poll_interval: float = Field(
        0.1, gt=0, description="First wait before re-polling an authorization or order; grows 1.5x per poll up to 5 s, "
                               "and the CA's Retry-After wins.")
    acme_order_timeout: float = Field(600.0, gt=0)
    renewal_check_seconds: float = Field(300.0, gt=0, description="How often the worker looks for due renewals.")
    drift_poll_seconds: float = Field(
        300.0, ge=0, description="How often the worker reads each agent's drift observations "
        "(GET /v1/observations on the agent); 0: never.")
    drift_repair: bool = Field(
        True, description="Schedule a delivery that repairs a server whose ports were seen serving something else "
        "than its agent applied; false: only record it (events, TLS status).")
    drift_repair_backoff_seconds: float = Field(
        600.0, ge=0, description="After scheduling a delivery to repair a drifted server, how long the worker "
        "waits before scheduling another one for drift; doubled with each further repair while the "
        "server stays drifted, up to a day.")
    renewal_retry_base_seconds: float = Field(300.0, gt=0)
    renewal_retry_max_seconds: float = Field(6 * 3600.0, gt=0)

    # Webhooks (app/webhooks/, docs/webhooks.md) and expiry notices (app/expiry/)
    webhook_retry_schedule: str = Field(
        "5,300,1800,7200,18000,36000,36000",  # app.webhooks.policy.DEFAULT_SCHEDULE_TEXT
        description="Seconds to wait before each retry of a failed webhook delivery, comma-separated "
        "(+-10 % jitter); once spent, the delivery is `failed`. Default: about a day (Standard Webhooks' example).",
    )
    webhook_timeout_seconds: float = Field(15.0, gt=0, description="Longest a webhook attempt may take in all.")
    webhook_disable_after_seconds: float = Field(
        86400.0, gt=0, description="A webhook whose attempts have all failed for this long is disabled "
        "(event `webhook.disabled`).")
    webhook_concurrency: int = Field(4, ge=1, le=64, description="Requests in flight to one webhook at once.")
    expiry_check_seconds: float = Field(
        3600.0, gt=0, description="How often the worker looks for bound certificates nearing expiry.")

    # Retention (app/retention/, docs/operations.md "Retention"): the worker prunes in batches.
    retention_check_seconds: float = Field(
        3600.0, ge=0, description="How often the worker prunes old events, webhook deliveries and "
        "deployment history (one worker at a time); 0: never.")
    event_retention_days: int = Field(
        90, ge=0, description="Events (GET /v1/events) older than this many days are deleted; 0: kept forever.")
    webhook_delivery_retention_days: int = Field(
        30, ge=0, description="Delivered or failed webhook deliveries (and their attempts) last changed more "
        "than this many days ago are deleted; pending and retrying ones never. 0: kept forever.")
    deployment_history_keep: int = Field(
        100, ge=0, description="Finished deployments kept per server (the newest generations); the newest, "
        "the applied one and undelivered ones are always kept. 0: kept forever.")

    # Outbound requests on a customer's behalf (app/outbound.py): public unicast on port 53 only.
    outbound_allow: str = Field(
        "",
        description="Comma-separated CIDRs that customer DNS providers and propagation name servers "
        "may reach although not public (an internal primary, say). Widens the address rule only, "
        "never the port (53). Empty: public unicast only.",
    )
    outbound_resolver: str | None = Field(
        None,
        description="`address[:port]` of the DNS server that resolves customer-given host names for "
        "the outbound guard; default: the system resolver (getaddrinfo).",
    )

    @field_validator("metrics_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        """Checked at start: a short or blank token would make /metrics guessable. The message
        never repeats the value."""
        from app.kit.metricsendpoint import MIN_TOKEN_LENGTH

        if value is None:
            return None
        text = value.get_secret_value()
        if len(text) < MIN_TOKEN_LENGTH or any(c.isspace() for c in text):
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters without spaces "
                             "(e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("outbound_allow")
    @classmethod
    def _valid_cidrs(cls, value: str) -> str:
        parse_networks(value.split(","))  # a typo fails at start, not at the first order
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        from app.webhooks.policy import parse_schedule

        parse_schedule(value)
        return value

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        from app.webhooks.policy import parse_schedule

        return parse_schedule(self.webhook_retry_schedule)

    @property
    def outbound_allow_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.outbound_allow.split(","))

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'certpost.db').resolve()}"

    @cached_property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    @cached_property
    def resolved_controller_key_file(self) -> Path:
        return self.controller_key_file or self.data_dir / "controller.key"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def get_settings() -> Settings:
    return Settings()
