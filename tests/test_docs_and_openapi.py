"""/docs and /redoc work offline, every problem `type` resolves to a page, and openapi/openapi.json
is what the code exports."""

import json
import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from app.cli import openapi_document
from app.problems import PROBLEM_JSON, catalogue

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_page_loads_only_same_origin_assets(client, page):
    r = await client.get(page)
    assert r.status_code == 200
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text)
    refs += re.findall(r"""url:\s*['"]([^'"]+)['"]""", r.text)
    assert any(ref.endswith(".js") for ref in refs)
    assert page == "/redoc" or any(ref.endswith(".css") for ref in refs)
    base = str(client.base_url) + page
    for ref in refs:
        absolute = urljoin(base, ref)
        assert urlsplit(absolute).netloc == client.base_url.host, f"{ref} is not served by certpost"
        asset = await client.get(absolute)
        assert asset.status_code == 200, ref
    assert "https://" not in r.text and "http://" not in r.text.replace(str(client.base_url), "")


def test_openapi_file_matches_code():
    committed = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    assert committed == openapi_document(), "run `make openapi` and commit openapi/openapi.json"


def test_openapi_documents_problem_responses():
    doc = openapi_document()
    responses = doc["paths"]["/v1/domains/{name}/bindings/{service}"]["put"]["responses"]
    assert "409" in responses and "422" in responses and "401" in responses
    assert "sni_unsupported" in responses["409"]["description"]


def test_openapi_errors_are_documented_as_sent():
    """Every error is application/problem+json with the Problem schema; FastAPI's unsent
    HTTPValidationError is gone; 422 everywhere, 413 for every body method, 400 where a body is parsed."""
    doc = openapi_document()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert "errors" in doc["components"]["schemas"]["Problem"]["properties"]
    operations = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(operations) >= 40
    for path, method, op in operations:
        responses = op["responses"]
        where = f"{method.upper()} {path}"
        assert "422" in responses and "validation_error" in responses["422"]["description"], where
        if op.get("security"):
            assert "401" in responses, where
        if method in {"post", "put", "patch"}:
            assert "413" in responses, where
        if "requestBody" in op:
            assert "400" in responses, where
        for status, response in responses.items():
            if int(status) >= 400:
                assert list(response["content"]) == [PROBLEM_JSON], (where, status)
                schema = response["content"][PROBLEM_JSON]["schema"]
                assert schema["allOf"][0] == {"$ref": "#/components/schemas/Problem"}, (where, status)


async def test_every_problem_type_resolves_to_a_page(client):
    """`type` is `/problems/<code>`, relative to the API (RFC 9457 section 3.1.1), and the API serves it."""
    missing = await client.get("/v1/domains/no-such.example", headers={"Authorization": "Bearer cpt_x_y"})
    assert missing.json()["type"] == "/problems/unauthenticated"
    index = await client.get("/problems")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    for kind in catalogue().values():
        assert f'href="/problems/{kind.code}"' in index.text
        page = await client.get(f"/problems/{kind.code}")
        assert page.status_code == 200, kind.code
        assert kind.code in page.text and str(kind.status) in page.text
    unknown = await client.get("/problems/no_such_code")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
