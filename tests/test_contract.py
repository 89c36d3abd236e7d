"""The OpenAPI document is a contract client generators can use (issue 9): every operation, present
and future, is held to the conventions here, without a server or a database.

- operationIds are unique lowerCamelCase verbNoun (`getDomainTls`, `putBinding`), so generated
  clients get readable method names;
- every operation has a hand-written summary and description, every parameter and every schema
  property a description, every tag a description;
- every request body and every response with a body has an example; errors have one per code;
- every error is `application/problem+json` with the one Problem schema, its `code` enumerated per
  response; the Problem schema carries every extension member any error class declares, and every
  extension member passed to an error in app/ is declared by its class;
- the warning codes and reasons the code emits are in the documented enums.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from app.cli import openapi_document
from app.problems import EXTENSIONS, PROBLEM_JSON, AppError, catalogue, error_classes

ROOT = Path(__file__).resolve().parent.parent
VERBS = ("list", "get", "create", "put", "patch", "delete", "replace", "import", "renew", "revoke", "export", "redeliver")
OPERATION_ID = re.compile(rf"^({'|'.join(VERBS)})([A-Z][a-z0-9]+)+$")
METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def doc() -> dict:
    return openapi_document()


def operations(doc):
    return [(f"{method.upper()} {path}", op) for path, item in doc["paths"].items()
            for method, op in item.items() if method in METHODS]


def test_operation_ids_are_unique_lower_camel_verb_noun(doc):
    ids = [op.get("operationId") for _, op in operations(doc)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    bad = {where: op.get("operationId") for where, op in operations(doc)
           if not OPERATION_ID.match(op.get("operationId") or "")}
    assert not bad, f"operationId must be lowerCamelCase verbNoun ({', '.join(VERBS)}): {bad}"


def test_generated_method_names_read_well(doc):
    ids = {op["operationId"] for _, op in operations(doc)}
    assert {"listDomains", "getDomain", "createDomain", "deleteDomain", "getDomainBindings", "putBinding",
            "deleteBinding", "getDomainTls", "listCertificates", "createCertificate", "importCertificate"} <= ids


def test_every_operation_has_a_summary_and_a_description(doc):
    for where, op in operations(doc):
        summary, description = op.get("summary", ""), op.get("description", "")
        assert summary and len(summary) <= 80 and not summary.endswith("."), (where, summary)
        # FastAPI derives "Tls Status" from a function name: a hand-written summary has lower case words
        assert summary != summary.title() or len(summary.split()) == 1, (where, summary)
        assert len(description) >= 20, (where, description)
        assert op.get("tags"), where
        for status, response in op["responses"].items():
            assert response.get("description") not in ("", "Successful Response"), (where, status)


def test_every_parameter_and_property_is_described(doc):
    missing = [f"{where} {p['in']} {p['name']}" for where, op in operations(doc)
               for p in op.get("parameters", []) if not p.get("description")]
    assert not missing, missing
    for name, schema in doc["components"]["schemas"].items():
        for prop, sub in schema.get("properties", {}).items():
            assert sub.get("description"), f"{name}.{prop} has no description"


def test_every_tag_is_described(doc):
    described = {t["name"] for t in doc.get("tags", []) if t.get("description")}
    used = {tag for _, op in operations(doc) for tag in op.get("tags", [])}
    assert used <= described, used - described


def test_every_body_and_response_has_an_example(doc):
    for where, op in operations(doc):
        for media_type, media in op.get("requestBody", {}).get("content", {}).items():
            assert "example" in media or "examples" in media, (where, "request", media_type)
        for status, response in op["responses"].items():
            for media_type, media in response.get("content", {}).items():
                assert "example" in media or "examples" in media, (where, status, media_type)


def test_real_pem_in_the_upload_example(doc):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    example = doc["paths"]["/v1/certificates"]["post"]["requestBody"]["content"]["application/json"]["example"]
    cert = x509.load_pem_x509_certificate(example["certificate_pem"].encode())
    key = serialization.load_pem_private_key(example["private_key_pem"].encode(), None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


def test_errors_are_problems_with_their_codes_enumerated(doc):
    kinds = catalogue()
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["properties"]["code"]["enum"]) == set(kinds)
    assert set(EXTENSIONS) <= set(problem["properties"])
    for schema in ("HTTPValidationError", "ValidationError"):
        assert schema not in doc["components"]["schemas"]
    for where, op in operations(doc):
        for status, response in op["responses"].items():
            if int(status) < 400:
                continue
            media = response["content"]
            assert list(media) == [PROBLEM_JSON], (where, status)
            schema = media[PROBLEM_JSON]["schema"]
            assert schema["allOf"][0] == {"$ref": "#/components/schemas/Problem"}, (where, status)
            codes = schema["allOf"][1]["properties"]["code"]["enum"]
            assert codes, (where, status)
            for code in codes:
                assert kinds[code].status == int(status), (where, status, code)
                example = media[PROBLEM_JSON]["examples"][code]["value"]
                assert example["code"] == code and example["type"] == f"/problems/{code}"
                assert set(kinds[code].extensions) <= set(example), (code, kinds[code].extensions)


def test_every_error_class_documents_itself():
    for cls in error_classes():
        if cls.__module__.startswith("app.agent"):
            continue
        assert set(cls.extensions) <= set(EXTENSIONS), cls
    for kind in catalogue().values():
        assert kind.description and kind.description != kind.title, f"{kind.code}: give its class a docstring"


def _app_sources():
    for path in sorted((ROOT / "app").rglob("*.py")):
        if "agent" not in path.relative_to(ROOT / "app").parts[:1]:
            yield path, ast.parse(path.read_text(), str(path))


def test_every_extension_member_sent_is_declared():
    """Every keyword passed to an AppError subclass in app/ (`HostnameNotCovered(..., hostname=...)`) is
    one of that class's `extensions`, so the Problem schema carries every member responses carry."""
    by_name: dict[str, list[type[AppError]]] = {}
    for cls in error_classes():
        by_name.setdefault(cls.__name__, []).append(cls)
    undeclared = []
    for path, tree in _app_sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            classes = by_name.get(name or "")
            if not classes:
                continue
            for keyword in node.keywords:
                if keyword.arg and not any(keyword.arg in cls.extensions for cls in classes):
                    undeclared.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}({keyword.arg}=...)")
    assert not undeclared, f"declare these in the class's `extensions` and app.problems.EXTENSIONS: {undeclared}"


def test_warning_codes_and_reasons_emitted_are_documented(doc):
    schemas = doc["components"]["schemas"]
    warning_codes = set(schemas["WarningOut"]["properties"]["code"]["enum"])
    reasons = set(schemas["ServiceTls"]["properties"]["reasons"]["items"]["enum"])
    notices = set(schemas["ServiceTls"]["properties"]["notices"]["items"]["enum"])
    emitted_warnings, emitted_reasons, emitted_notices = set(), set(), set()
    for _path, tree in _app_sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in ("Warning", "UploadWarning") and node.args and isinstance(node.args[0], ast.Constant):
                emitted_warnings.add(node.args[0].value)
            if name == "WarningOut":
                emitted_warnings |= {k.value.value for k in node.keywords
                                     if k.arg == "code" and isinstance(k.value, ast.Constant)}
            if name == "append" and isinstance(node.func, ast.Attribute) and node.args \
                    and isinstance(node.args[0], ast.Constant):
                target = ast.unparse(node.func.value)
                if target == "reasons":
                    emitted_reasons.add(node.args[0].value)
                elif target.endswith("notices"):
                    emitted_notices.add(node.args[0].value)
    assert emitted_warnings and emitted_warnings <= warning_codes, emitted_warnings - warning_codes
    assert emitted_reasons and emitted_reasons <= reasons, emitted_reasons - reasons
    assert emitted_notices and emitted_notices <= notices, emitted_notices - notices
