"""The OpenAPI document passes the tools a client developer would run on it (issue 9):

- Redocly CLI's `recommended` ruleset lints it with no error and no warning (every example is
  validated against its schema by `no-invalid-media-type-examples` and `no-invalid-schema-examples`);
- openapi-typescript generates a TypeScript client from it, and `tsc --strict` type-checks
  tests/contract/client.ts, which uses the generated types of getDomainTls, listCertificates,
  putBinding and the Problem type as a control panel would.

The tools are pinned in scripts/node-tools/package.json (and its lock file) and installed into
.tools/node by `make test-deps` (scripts/install-node-tools.sh); nothing is skipped when they are
missing: the test fails and says how to install them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from app.cli import openapi_document

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".tools" / "node" / "node_modules" / ".bin"
ENV = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "NO_COLOR": "1",
       "CI": "true"}


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{path} is missing: run `make test-deps` (scripts/install-node-tools.sh)"
    return str(path)


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("contract") / "openapi.json"
    path.write_text(json.dumps(openapi_document(), indent=2))
    return path


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300, check=False)


def test_redocly_recommended_rules_pass_without_warnings(document):
    result = run([tool("redocly"), "lint", "--extends", "recommended", "--format", "json", str(document)],
                 document.parent)
    output = result.stdout
    report = json.loads(output[output.index("{"):]) if "{" in output else {}
    problems = [f"{p['severity']} {p['ruleId']}: {p['message']} at {p['location'][0].get('pointer')}"
                for p in report.get("problems", [])]
    assert result.returncode == 0 and report.get("totals", {}).get("errors", 1) == 0, (problems, result.stderr[-2000:])
    assert report["totals"]["warnings"] == 0, problems[:40]


def test_generated_typescript_client_type_checks(document, tmp_path):
    shutil.copy(ROOT / "tests" / "contract" / "client.ts", tmp_path / "client.ts")
    generated = run([tool("openapi-typescript"), str(document), "-o", str(tmp_path / "api.d.ts")], tmp_path)
    assert generated.returncode == 0, generated.stderr[-2000:]
    api = (tmp_path / "api.d.ts").read_text()
    for method in ("getDomainTls", "listCertificates", "putBinding", "importCertificate"):
        assert f"    {method}: {{" in api, method
    checked = run([tool("tsc"), "--noEmit", "--strict", "--target", "es2020", "--module", "es2020",
                   "--moduleResolution", "bundler", "client.ts", "api.d.ts"], tmp_path)
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-2000:]
