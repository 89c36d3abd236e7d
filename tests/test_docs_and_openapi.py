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
