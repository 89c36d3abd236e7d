"""A canary private key never appears in the database files, in any response, or in the logs."""

import base64
import logging

from sqlalchemy import text

from app.models import Base
from tests.support.api import upload, upload_body


def fragments(key_pem: str) -> list[bytes]:
    """Pieces of the key to look for: PEM lines, and 12-byte windows of the raw DER."""
    lines = [line.encode() for line in key_pem.splitlines() if line and not line.startswith("-----")]
    der = base64.b64decode(b"".join(lines))
    return lines + [der[i : i + 12] for i in range(0, len(der) - 12, 6)]


async def database_bytes(context, backend, settings) -> bytes:
    if backend == "sqlite":
        path = settings.resolved_database_url.split("///", 1)[1]
        await context.engine.dispose()  # flush the WAL's pages into view of plain reads too
        blob = b""
        for suffix in ("", "-wal", "-shm"):
            try:
                with open(path + suffix, "rb") as handle:  # noqa: ASYNC230 (a test's read of a closed database)
                    blob += handle.read()
            except FileNotFoundError:
                pass
        return blob
    dump = []
    async with context.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in await conn.execute(text(f"SELECT * FROM {table.name}")):
                dump.extend(value if isinstance(value, bytes) else str(value).encode() for value in row)
    return b"\n".join(dump)


async def test_canary_key_never_leaks(client, admin, test_ca, context, backend, settings, caplog):
    caplog.set_level(logging.DEBUG)
    issued = test_ca.issue(["webmail.canary.test"])
    responses = []
    cert = await upload(client, admin, issued)
    responses.append((await client.get(f"/v1/certificates/{cert['id']}", headers=admin)).text)
    responses.append((await client.get("/v1/certificates", headers=admin)).text)
    # Refused uploads carrying the key must not echo it either.
    other = test_ca.issue(["webmail.canary.test"])
    for body in (
        upload_body(other, private_key_pem=issued.key_pem),  # key_mismatch
        upload_body(issued, key_passphrase="x"),  # key_passphrase
        {**upload_body(issued), "certificate_pem": 5},  # validation_error
        {**upload_body(issued), "extra": issued.key_pem},  # unknown field
    ):
        r = await client.post("/v1/certificates", json=body, headers=admin)
        assert r.status_code == 422
        responses.append(r.text)
    replaced = await client.put(f"/v1/certificates/{cert['id']}", json=upload_body(issued), headers=admin)
    responses.append(replaced.text)

    stored = await database_bytes(context, backend, settings)
    assert cert["fingerprint_sha256"].encode() in stored  # the search itself works
    logs = caplog.text.encode()
    for fragment in fragments(issued.key_pem):
        assert fragment not in stored, "a fragment of the private key is stored in clear"
        assert fragment not in logs
        for text_ in responses:
            assert fragment not in text_.encode()
