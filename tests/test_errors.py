"""Problem documents: payload validation, unknown fields, body size, no echo of submitted values."""

from tests.support.api import assert_problem, upload_body


async def test_unknown_fields_refused(client, admin):
    r = await client.post("/v1/accounts", json={"name": "x", "colour": "blue"}, headers=admin)
    body = assert_problem(r, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", "colour"]


async def test_validation_error_never_echoes_values(client, admin, test_ca):
    issued = test_ca.issue(["mail.a.test"])
    secret_line = issued.key_pem.splitlines()[1]
    body = upload_body(issued, unexpected=issued.key_pem, key_passphrase=12345)
    body["certificate_pem"] = {"nested": issued.key_pem}
    r = await client.post("/v1/certificates", json=body, headers=admin)
    problem = assert_problem(r, 422, "validation_error")
    assert secret_line not in r.text and "12345" not in r.text
    assert {tuple(e["loc"]) for e in problem["errors"]} >= {("body", "unexpected"), ("body", "certificate_pem")}
    for error in problem["errors"]:
        assert set(error) == {"loc", "message", "type"}


async def test_malformed_json(client, admin):
    r = await client.post("/v1/accounts", content=b"{not json", headers={**admin, "content-type": "application/json"})
    assert_problem(r, 422, "validation_error")


async def test_body_over_one_mebibyte_refused_before_parsing(client, admin):
    big = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    r = await client.post("/v1/accounts", content=big, headers={**admin, "content-type": "application/json"})
    assert_problem(r, 413, "payload_too_large")

    async def chunks():
        yield b'--zz\r\nContent-Disposition: form-data; name="pkcs12"; filename="a.p12"\r\n\r\n'
        for _ in range(20):
            yield b"x" * 65536  # 1.25 MiB without a Content-Length

    r = await client.post("/v1/certificates/import", content=chunks(), headers={**admin, "content-type": "multipart/form-data; boundary=zz"})
    assert_problem(r, 413, "payload_too_large")


async def test_unknown_route_and_method(client, admin):
    assert_problem(await client.get("/v1/nothing", headers=admin), 404, "not_found")
    assert_problem(await client.patch("/v1/accounts", headers=admin), 405, "method_not_allowed")


async def test_health_and_readiness_need_no_token(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["database"] == "ok"


async def test_readiness_reports_an_unreachable_database(app, client, context):
    from dataclasses import replace

    from sqlalchemy.ext.asyncio import create_async_engine

    # A context like the real one whose database cannot be reached.
    unreachable = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    app.state.ctx = replace(context, engine=unreachable)
    r = await client.get("/readyz")
    app.state.ctx = context
    await unreachable.dispose()
    assert r.status_code == 503 and r.json()["database"] == "unreachable"
    assert r.json()["code"] == "database_unavailable" and r.headers["retry-after"].isdigit()
    assert (await client.get("/healthz")).status_code == 200


async def test_a_busy_503_tells_the_client_when_to_retry():
    """503s that mean "busy for a moment" carry Retry-After (RFC 9110 section 10.2.3); a
    generated client's retry policy reads it."""
    import httpx
    from fastapi import FastAPI

    from app.certificates.reading import MaterialBusy
    from app.problems import DatabaseUnavailable, install_handlers

    app = FastAPI()
    install_handlers(app)

    @app.get("/busy")
    async def busy():
        raise MaterialBusy()

    @app.get("/away")
    async def away():
        raise DatabaseUnavailable()

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answers = {path: await client.get(path) for path in ("/busy", "/away")}
    for path, code, wait in (("/busy", "material_busy", "5"), ("/away", "database_unavailable", "2")):
        answer = answers[path]
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["retry-after"] == wait
        assert answer.json()["code"] == code


async def test_an_unexpected_exception_is_a_problem_with_the_request_id(app, admin):
    """A bug (a route that raises something no handler expects) is answered 500 problem+json
    ``internal_error`` with no detail, and with the request's X-Request-ID like every answer,
    although that 500 is sent outside the request-id middleware (app/kit/requestlog.py)."""
    import httpx

    from app.events.router import get_service

    async def broken():
        raise RuntimeError("a bug with internal detail at 10.1.2.3")

    app.dependency_overrides[get_service] = broken
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://certpost.test") as client:
            given = await client.get("/v1/events", headers={**admin, "X-Request-ID": "support-ticket-42"})
            fresh = await client.get("/v1/events", headers=admin)
    finally:
        app.dependency_overrides.pop(get_service)
    body = assert_problem(given, 500, "internal_error")
    assert given.headers["x-request-id"] == "support-ticket-42"
    assert "10.1.2.3" not in given.text and "RuntimeError" not in given.text and body["status"] == 500
    assert_problem(fresh, 500, "internal_error")
    assert len(fresh.headers["x-request-id"]) == 32


def test_every_response_of_every_operation_declares_x_request_id(app):
    doc = app.openapi()
    assert doc["components"]["headers"]["X-Request-ID"]["schema"] == {"type": "string", "maxLength": 128}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                assert response["headers"]["X-Request-ID"] == {"$ref": "#/components/headers/X-Request-ID"}, \
                    (method, path, status)
