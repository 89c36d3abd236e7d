from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app import examples as ex
from app.schemas import Strict
from app.servers.schemas import FINGERPRINT

TOKEN_EXAMPLE = f"cpe_{ex.ENROLMENT_TOKEN_ID}_Xq3v9V0rJd2kq2mW6s8b1n4Yh7cT5uE0pL9aZxQwErt"
CONTROLLER_TLS = "5d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6"
CONTROLLER_KEY = "ed25519:3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


class EnrolmentTokenCreate(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"expires_in": 3600, "description": "mx1 install"}]})

    expires_in: int | None = Field(None, ge=60, le=7 * 86400, description="Lifetime in seconds (default: the "
                                   "controller's CERTPOST_ENROLMENT_TOKEN_SECONDS, 1 hour).", examples=[3600])
    description: str | None = Field(None, max_length=200, description="A note for people.",
                                    examples=["mx1 install"])


class EnrolmentTokenOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": ex.ENROLMENT_TOKEN_ID, "server_id": ex.SERVER_ID, "token": TOKEN_EXAMPLE,
        "description": "mx1 install", "created_at": ex.CREATED, "expires_at": "2026-11-30T10:15:00Z",
        "controller_url": "https://certpost.example.net:8443", "controller_tls_fingerprint": CONTROLLER_TLS,
        "command": f"certpost agent enroll --controller https://certpost.example.net:8443 --token {TOKEN_EXAMPLE} "
                   f"--pin sha256:{CONTROLLER_TLS} --config /etc/certpost/agent.toml",
    }]})

    id: str = Field(description="The token's id (not the token).", examples=[ex.ENROLMENT_TOKEN_ID])
    server_id: str = Field(description="The server whose agent it enrols.", examples=[ex.SERVER_ID])
    token: str = Field(description="The token itself, shown this once: single use, until `expires_at`.",
                       examples=[TOKEN_EXAMPLE])
    description: str | None = Field(description="The note for people.", examples=["mx1 install"])
    created_at: datetime = Field(description="When it was made (UTC).", examples=[ex.CREATED])
    expires_at: datetime = Field(description="After this instant (UTC) it is refused.",
                                 examples=["2026-11-30T10:15:00Z"])
    controller_url: str = Field(description="The controller's URL for the agent (CERTPOST_PUBLIC_URL, else the "
                                "URL this request came to).", examples=["https://certpost.example.net:8443"])
    controller_tls_fingerprint: str | None = Field(
        description="SHA-256 of the certificate `certpost serve` serves (CERTPOST_TLS_CERT_FILE), to pin with "
        "`--pin sha256:...`; null when the controller serves plain HTTP (behind a TLS proxy: pin the "
        "proxy's certificate or pass `--ca-bundle`).", examples=[CONTROLLER_TLS])
    command: str = Field(description="What to run on the mail server, as root.",
                         examples=[("certpost agent enroll --controller https://certpost.example.net:8443 --token "
                                    f"{TOKEN_EXAMPLE} --pin sha256:{CONTROLLER_TLS} --config /etc/certpost/agent.toml")])


class AgentEnrolmentIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "token": TOKEN_EXAMPLE, "agent_url": "https://mx1.example.net:8750",
        "agent_tls_fingerprint": ex.SERVER_FINGERPRINT}]})

    token: str = Field(min_length=1, max_length=200, description="The enrolment token an administrator made.",
                       examples=[TOKEN_EXAMPLE])
    agent_url: str = Field(max_length=500, description="https:// URL where the controller reaches the agent.",
                           examples=["https://mx1.example.net:8750"])
    agent_tls_fingerprint: str = Field(pattern=FINGERPRINT, description="SHA-256 of the agent's TLS "
                                       "certificate, which the controller will pin.",
                                       examples=[ex.SERVER_FINGERPRINT])


class AgentEnrolmentOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "server_id": ex.SERVER_ID, "server_name": "mx1", "server_hostname": ex.SERVER_HOSTNAME,
        "agent_url": "https://mx1.example.net:8750", "agent_tls_fingerprint": ex.SERVER_FINGERPRINT,
        "controller_public_key": CONTROLLER_KEY}]})

    server_id: str = Field(description="The server the agent now serves.", examples=[ex.SERVER_ID])
    server_name: str = Field(description="Its name for people.", examples=["mx1"])
    server_hostname: str = Field(description="Its host name (the agent's `[agent] hostname` when its "
                                 "configuration has none).", examples=[ex.SERVER_HOSTNAME])
    agent_url: str = Field(description="The agent URL registered.", examples=["https://mx1.example.net:8750"])
    agent_tls_fingerprint: str = Field(description="The agent fingerprint registered.",
                                       examples=[ex.SERVER_FINGERPRINT])
    controller_public_key: str = Field(description="The Ed25519 key the controller signs pushes with: the "
                                       "agent's `[agent] controller_public_key`.", examples=[CONTROLLER_KEY])
