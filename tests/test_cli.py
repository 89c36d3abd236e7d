"""The `certpost` command as an operator runs it, in a subprocess with its own data directory."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def certpost(*args, data_dir, check=True, timeout=60):
    env = {**os.environ, "CERTPOST_DATA_DIR": str(data_dir)}
    env.pop("CERTPOST_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=check)


def test_migrate_tokens_and_keys(tmp_path):
    data = tmp_path / "data"
    assert "latest revision" in certpost("migrate", data_dir=data).stdout
    token = certpost("tokens", "create", "--role", "admin", data_dir=data).stdout.strip()
    assert token.startswith("cpt_")
    refused = certpost("tokens", "create", "--role", "customer", data_dir=data, check=False)
    assert refused.returncode != 0 and "--account" in refused.stderr
    key = certpost("controller-key", data_dir=data).stdout.strip()
    assert key.startswith("ed25519:") and certpost("controller-key", data_dir=data).stdout.strip() == key
    assert (data / "controller.key").stat().st_mode & 0o777 == 0o600


def test_openapi_command_prints_the_committed_document(tmp_path):
    printed = json.loads(certpost("openapi", data_dir=tmp_path).stdout)
    assert printed == json.loads((ROOT / "openapi" / "openapi.json").read_text())


def test_serve_refuses_a_master_key_others_can_read(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    key = data / "master.key"
    key.write_text("00" * 32)
    key.chmod(0o644)
    result = certpost("serve", "--port", "0", data_dir=data, check=False)
    assert result.returncode != 0
    assert "master key file" in result.stderr and "chmod 600" in result.stderr


def _serve_until_ready(data_dir) -> tuple[str, str]:
    """Start `certpost serve`, wait until it answers /healthz, stop it; (stdout, stderr)."""
    import time

    import httpx

    from tests.support.ports import free_port

    port = free_port()
    env = {**os.environ, "CERTPOST_DATA_DIR": str(data_dir)}
    env.pop("CERTPOST_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("certpost serve did not become ready")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    return out, err


def test_first_start_prints_an_admin_token_once(tmp_path):
    data = tmp_path / "data"
    first, _ = _serve_until_ready(data)
    assert "shown only this once" in first
    token = next(line.strip() for line in first.splitlines() if line.strip().startswith("cpt_"))
    assert token not in (data / "certpost.db").read_bytes().decode("latin-1")
    second, _ = _serve_until_ready(data)
    assert "cpt_" not in second
    assert (data / "master.key").stat().st_mode & 0o777 == 0o600


def test_worker_runs_alone(tmp_path):
    import time

    env = {**os.environ, "CERTPOST_DATA_DIR": str(tmp_path / "data")}
    env.pop("CERTPOST_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    assert proc.poll() is None, proc.communicate()[1]
    proc.terminate()
    _out, err = proc.communicate(timeout=20)
    assert "worker" in err and "started" in err


def test_serve_refuses_a_controller_key_others_can_read(tmp_path):
    data = tmp_path / "data"
    certpost("controller-key", data_dir=data)
    (data / "controller.key").chmod(0o640)
    result = certpost("serve", "--port", "0", data_dir=data, check=False)
    assert result.returncode != 0 and "controller key file" in result.stderr
