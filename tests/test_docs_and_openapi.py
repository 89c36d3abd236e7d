"""/docs works offline, and openapi/openapi.json is what the code exports."""

import json
import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from app.cli import openapi_document

ROOT = Path(__file__).resolve().parent.parent


async def test_docs_page_loads_only_same_origin_assets(client):
    r = await client.get("/docs")
    assert r.status_code == 200
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text)
    refs += re.findall(r"""url:\s*['"]([^'"]+)['"]""", r.text)
    assert any(ref.endswith(".js") for ref in refs) and any(ref.endswith(".css") for ref in refs)
    base = str(client.base_url) + "/docs"
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
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (where, status)
