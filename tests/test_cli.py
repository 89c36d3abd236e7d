"""The `certpost` command as an operator types it: the console script `pip install -e .`
installed, in a subprocess, with its own data directory (README "Commands", docs/agent.md)."""

import asyncio
import json
import os
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.deployments.agent_client import AgentClient, AgentError
from app.kit.signing import public_key_to_text
from tests.support.daemons import AgentProcess, bare_stack, certpost_command
from tests.support.logs import has_line

ROOT = Path(__file__).resolve().parent.parent
CERTPOST = certpost_command()


def _env(data_dir) -> dict:
    env = {**os.environ, "CERTPOST_DATA_DIR": str(data_dir)}
    env.pop("CERTPOST_DATABASE_URL", None)
    return env


def certpost(*args, data_dir, check=True, timeout=60):
    return subprocess.run([CERTPOST, *args], cwd=data_dir.parent, env=_env(data_dir),
                          capture_output=True, text=True, timeout=timeout, check=check)


def test_migrate_tokens_and_keys(tmp_path):
    data = tmp_path / "data"
    early = certpost("tokens", "create", "--role", "admin", data_dir=data, check=False)
    assert early.returncode == 1 and "Traceback" not in early.stderr and "certpost migrate" in early.stderr
    assert "latest revision" in certpost("migrate", data_dir=data).stdout
    token = certpost("tokens", "create", "--role", "admin", data_dir=data).stdout.strip()
    assert token.startswith("cpt_")
    refused = certpost("tokens", "create", "--role", "customer", data_dir=data, check=False)
    assert refused.returncode != 0 and "--account" in refused.stderr
    unknown = certpost("tokens", "create", "--role", "customer", "--account", "nope", data_dir=data, check=False)
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert unknown.stderr.strip() == "certpost: account nope does not exist"
    key = certpost("controller-key", data_dir=data).stdout.strip()
    assert key.startswith("ed25519:") and certpost("controller-key", data_dir=data).stdout.strip() == key
    assert (data / "controller.key").stat().st_mode & 0o777 == 0o600


def test_openapi_command_prints_the_committed_document(tmp_path):
    printed = json.loads(certpost("openapi", data_dir=tmp_path).stdout)
    assert printed == json.loads((ROOT / "openapi" / "openapi.json").read_text())


def test_a_reader_that_stops_early_gets_no_error(tmp_path):
    """`certpost openapi | head` as typed in a shell: the closed pipe is not the user's mistake."""
    piped = subprocess.run(["bash", "-o", "pipefail", "-c", f"{CERTPOST} openapi | head -c 20"],
                           env=_env(tmp_path), capture_output=True, text=True, timeout=60, check=False)
    assert piped.stdout.startswith("{") and piped.stderr == ""


def test_serve_refuses_a_master_key_others_can_read(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    key = data / "master.key"
    key.write_text("00" * 32)
    key.chmod(0o644)
    result = certpost("serve", "--port", "0", data_dir=data, check=False)
    assert result.returncode != 0
    assert "master key file" in result.stderr and "chmod 600" in result.stderr


def _serve_until_ready(data_dir, *args: str, env: dict | None = None) -> tuple[str, str]:
    """Start `certpost serve`, wait until it answers /healthz, stop it; (stdout, stderr)."""
    import time

    import httpx

    from tests.support.ports import free_port

    port = free_port()
    proc = subprocess.Popen([CERTPOST, "serve", "--port", str(port), *args], cwd=data_dir.parent,
                            env={**_env(data_dir), **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90  # a start takes ~10 s here, 30+ s on a loaded machine
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


def test_run_worker_setting_keeps_the_worker_out_of_serve(tmp_path):
    """CERTPOST_RUN_WORKER=false (README's settings) and --no-worker both leave the worker to
    `certpost worker` processes; by default `certpost serve` runs one (its "worker ... started")."""
    _, default = _serve_until_ready(tmp_path / "a")
    assert has_line(default, "certpost.worker", "worker "), default
    _, off = _serve_until_ready(tmp_path / "b", env={"CERTPOST_RUN_WORKER": "false"})
    assert not has_line(off, "certpost.worker", "worker "), off
    _, flag = _serve_until_ready(tmp_path / "c", "--no-worker")
    assert not has_line(flag, "certpost.worker", "worker "), flag


def test_worker_runs_alone(tmp_path):
    """`certpost worker` migrates, logs that it started and keeps running until told to stop.

    It waits for the log line (up to 120 s: a loaded CI machine is slow to import) instead of
    sleeping a fixed time, then checks the process is still alive and stops on SIGTERM."""
    import selectors
    import time

    proc = subprocess.Popen([CERTPOST, "worker"], cwd=tmp_path, env=_env(tmp_path / "data"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + 120
    try:
        while not ("worker" in seen and "started" in seen) and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if selector.select(timeout=0.5):
                seen += proc.stderr.readline()
        assert "worker" in seen and "started" in seen, seen
        time.sleep(1)
        assert proc.poll() is None, seen + proc.stderr.read()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode is not None


def test_serve_refuses_a_controller_key_others_can_read(tmp_path):
    data = tmp_path / "data"
    certpost("controller-key", data_dir=data)
    (data / "controller.key").chmod(0o640)
    result = certpost("serve", "--port", "0", data_dir=data, check=False)
    assert result.returncode != 0 and "controller key file" in result.stderr


def test_the_console_script_is_the_installed_one():
    """`certpost` is the entry point pyproject.toml declares, installed in this environment."""
    text = Path(CERTPOST).read_text()
    assert "from app.cli import main" in text
    assert certpost("--help", data_dir=ROOT / "none").stdout.count("controller-key") >= 1


def test_agent_starts_prints_its_fingerprint_and_answers_a_signed_request(tmp_path):
    """`certpost agent --config FILE` (README, docs/agent.md) serves HTTPS; the controller's own
    client (pinned to the printed fingerprint, signing with its key) reads its state."""
    key = Ed25519PrivateKey.generate()
    stack = bare_stack(tmp_path / "agent", public_key_to_text(key.public_key()))
    agent = AgentProcess(stack)
    try:
        fingerprint = agent.start()
        assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0

        async def ask(signing_key):
            client = AgentClient(stack.agent_url, fingerprint, signing_key, timeout=10)
            try:
                return await client.state()
            finally:
                await client.aclose()

        state = asyncio.run(ask(key))
        assert state["applied_generation"] == 0 and isinstance(state["fingerprints"], list)
        try:
            asyncio.run(ask(Ed25519PrivateKey.generate()))
        except AgentError as exc:
            assert exc.code == "signature_invalid" and exc.status == 401
        else:
            raise AssertionError("a request signed by another key was accepted")
        wrong_pin = AgentClient(stack.agent_url, "0" * 64, key, timeout=10)
        try:
            asyncio.run(wrong_pin.state())
        except AgentError as exc:
            assert exc.code == "agent_tls_pin_mismatch"
        else:
            raise AssertionError("the pin was not checked")
    finally:
        agent.stop()
    assert (stack.state_dir / "tls" / "agent.key").stat().st_mode & 0o777 == 0o600


def test_agent_prepare_only_writes_its_identity_and_exits(tmp_path):
    key = Ed25519PrivateKey.generate()
    stack = bare_stack(tmp_path / "agent", public_key_to_text(key.public_key()))
    args = ("agent", "--config", str(stack.agent_config), "--prepare-only")
    first = certpost(*args, data_dir=tmp_path / "data", timeout=60).stdout
    assert first.startswith("agent TLS fingerprint: ")
    # Idempotent: the identity is kept, so the controller's pin stays valid.
    assert certpost(*args, data_dir=tmp_path / "data").stdout == first
    assert stack.state_dir.stat().st_mode & 0o777 == 0o700


def test_agent_with_a_bad_config_says_why_without_a_traceback(tmp_path):
    missing = certpost("agent", "--config", str(tmp_path / "nope.toml"), data_dir=tmp_path / "d",
                       check=False)
    assert missing.returncode != 0 and "nope.toml" in missing.stderr
    assert "Traceback" not in missing.stderr
    broken = tmp_path / "agent.toml"
    broken.write_text("[agent\n")
    result = certpost("agent", "--config", str(broken), data_dir=tmp_path / "d", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    broken.write_text('[agent]\nstate_dir = "/tmp/x"\n')
    result = certpost("agent", "--config", str(broken), data_dir=tmp_path / "d", check=False)
    assert result.returncode != 0 and "controller_public_key" in result.stderr
    broken.write_text('[agent]\nstate_dir = "/tmp/x"\ncontroller_public_key = "ed25519:AA=="\n')
    result = certpost("agent", "--config", str(broken), data_dir=tmp_path / "d", check=False)
    assert result.returncode != 0 and "controller_public_key" in result.stderr
    result = certpost("agent", "--config", str(broken), data_dir=tmp_path / "d", check=False)
    assert result.returncode != 0 and "not 32 bytes" in result.stderr
    good_key = public_key_to_text(Ed25519PrivateKey.generate().public_key())
    broken.write_text(f'[agent]\nstate_dir = "/tmp/x"\ncontroller_public_key = "{good_key}"\n'
                      '[nginx]\ndirectory = "/tmp/x"\nbundle_group = "no-such-group-here"\n')
    result = certpost("agent", "--config", str(broken), data_dir=tmp_path / "d", check=False)
    assert result.returncode != 0 and "no-such-group-here" in result.stderr


def test_a_wrong_setting_is_one_line_naming_the_variable(tmp_path):
    """CERTPOST_LEASE_SECONDS=0 was accepted (every lease already over when taken); a wrong
    value was a pydantic traceback."""
    for value, words in (("0", "greater than 0"), ("abc", "valid number"), ("-5", "greater than 0")):
        result = subprocess.run([CERTPOST, "migrate"], cwd=tmp_path,
                                env={**_env(tmp_path / "data"), "CERTPOST_LEASE_SECONDS": value},
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("certpost: CERTPOST_LEASE_SECONDS: ") and words in result.stderr


# Issue 9, "CLI and README that do not surprise": the commands as a user types them.

def _one_line_refusal(result, *words: str) -> str:
    """Exit status 1, nothing on stdout, one line on stderr naming ``words``, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("certpost: "), result.stderr
    assert not result.stdout, result.stdout
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_version_comes_from_the_package_metadata(tmp_path):
    from importlib.metadata import version

    result = certpost("--version", data_dir=tmp_path / "data")
    assert result.stdout.strip() == f"certpost {version('certpost')}" and not result.stderr
    assert not (tmp_path / "data").exists()


def test_migrations_are_quiet_one_line_when_a_revision_runs(tmp_path):
    """Alembic's INFO lines ("Context impl", "Will assume", "Running upgrade", its plugins) used
    to come with every command; now one line says what ran, and nothing when nothing did."""
    data = tmp_path / "data"
    first = certpost("migrate", data_dir=data)
    assert first.stdout == "certpost: database is at the latest revision\n"
    lines = first.stderr.splitlines()
    assert len(lines) == 1 and "database upgraded from empty to " in lines[0], first.stderr
    again = certpost("migrate", data_dir=data)
    assert again.stderr == "" and "alembic" not in again.stdout.lower()
    token = certpost("tokens", "create", "--role", "admin", data_dir=data)
    assert token.stderr == "" and token.stdout.startswith("cpt_")
    listed = certpost("tokens", "list", data_dir=data)
    assert listed.stderr == "" and "alembic" not in listed.stdout.lower()


def test_a_command_from_another_directory_finds_the_same_database(tmp_path):
    """Without CERTPOST_DATA_DIR the data directory is $XDG_DATA_HOME/certpost (or
    ~/.local/share/certpost), whatever the current directory: it was ./data, so a token command
    typed elsewhere made a second, empty database and died with `no such table`."""
    home, here, there = tmp_path / "home", tmp_path / "checkout", tmp_path / "elsewhere"
    for folder in (home, here, there):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("CERTPOST_DATA_DIR", "CERTPOST_DATABASE_URL", "XDG_DATA_HOME")}
    env["HOME"] = str(home)

    def run(*args, cwd, extra=None):
        return subprocess.run(check=False, args=[CERTPOST, *args], cwd=cwd, env={**env, **(extra or {})},
                              capture_output=True, text=True, timeout=60)

    assert run("migrate", cwd=here).returncode == 0
    made = run("tokens", "create", "--role", "admin", "--description", "elsewhere", cwd=there)
    assert made.returncode == 0 and made.stdout.startswith("cpt_"), made.stderr
    assert "elsewhere" in run("tokens", "list", cwd=here).stdout
    assert (home / ".local" / "share" / "certpost" / "certpost.db").exists()
    assert not (here / "data").exists() and not (there / "data").exists()
    xdg = run("migrate", cwd=there, extra={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert xdg.returncode == 0 and (tmp_path / "xdg" / "certpost" / "certpost.db").exists()
    # A data directory that holds no database: one line naming the variable; nothing created.
    missing = run("tokens", "list", cwd=there, extra={"CERTPOST_DATA_DIR": "data"})
    _one_line_refusal(missing, "CERTPOST_DATA_DIR=data", str(there / "data" / "certpost.db"), "certpost migrate")
    assert not (there / "data").exists()


def test_user_mistakes_are_one_line_and_exit_1(tmp_path):
    data = tmp_path / "data"
    certpost("migrate", data_dir=data)
    _one_line_refusal(certpost("tokens", "create", "--role", "customer", "--account", "nope",
                               data_dir=data, check=False), "account nope does not exist")
    _one_line_refusal(certpost("tokens", "list", "--account", "nope", data_dir=data, check=False),
                      "account nope does not exist")
    _one_line_refusal(certpost("tokens", "revoke", "0" * 8, data_dir=data, check=False), "no token 00000000")
    # A file that is not there, a database that is not there, a setting that is wrong.
    bundle = subprocess.run(
        check=False, args=[CERTPOST, "worker"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**_env(data), "CERTPOST_TRUST_BUNDLE": str(tmp_path / "nope.pem")})
    _one_line_refusal(bundle, "CERTPOST_TRUST_BUNDLE", "nope.pem", "No such file")
    from tests.support.ports import free_port

    away = f"postgresql+asyncpg://certpost:s3cret@127.0.0.1:{free_port()}/certpost"
    for command in (("migrate",), ("tokens", "list")):
        result = subprocess.run(check=False, args=[CERTPOST, *command], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                                env={**_env(data), "CERTPOST_DATABASE_URL": away})
        line = _one_line_refusal(result, "cannot reach the database", "CERTPOST_DATABASE_URL")
        assert "s3cret" not in line
    wrong = subprocess.run(check=False, args=[CERTPOST, "migrate"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                           env={**_env(data), "CERTPOST_DATABASE_URL": "mysq://x"})
    _one_line_refusal(wrong, "CERTPOST_DATABASE_URL")
    port = subprocess.run(check=False, args=[CERTPOST, "serve"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**_env(data), "CERTPOST_PORT": "eighty"})
    _one_line_refusal(port, "CERTPOST_PORT")
    # --debug (or CERTPOST_DEBUG=1) shows the traceback behind the same mistake.
    debug = certpost("--debug", "tokens", "create", "--role", "customer", "--account", "nope",
                     data_dir=data, check=False)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "UnknownAccount" in debug.stderr


def test_tokens_list_and_revoke(tmp_path):
    data = tmp_path / "data"
    certpost("migrate", data_dir=data)
    first = certpost("tokens", "create", "--role", "admin", "--description", "ops laptop", data_dir=data).stdout.strip()
    second = certpost("tokens", "create", "--role", "admin", data_dir=data).stdout.strip()
    first_id, second_id = first.split("_")[1], second.split("_")[1]
    listed = certpost("tokens", "list", data_dir=data).stdout.splitlines()
    assert listed[0].split() == ["ID", "ROLE", "ACCOUNT", "CREATED", "REVOKED", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in listed[1:]}
    assert set(rows) == {first_id, second_id} and rows[first_id].endswith("ops laptop")
    assert first.split("_", 2)[2] not in "\n".join(listed)  # never a secret
    # By id, or by the whole token as it was handed out.
    assert certpost("tokens", "revoke", first_id, data_dir=data).stdout.strip() == f"certpost: token {first_id} revoked"
    assert certpost("tokens", "revoke", second, data_dir=data).returncode == 0
    revoked = certpost("tokens", "list", data_dir=data).stdout.splitlines()[1:]
    assert all(line.split()[5] != "-" for line in revoked), revoked  # CREATED and REVOKED: date, time
    _one_line_refusal(certpost("tokens", "revoke", first_id, data_dir=data, check=False), "already revoked")


def test_tokens_on_the_test_database_backend(tmp_path, backend):
    """The token commands against the backend under test (CERTPOST_TEST_DB): on PostgreSQL an
    empty database is refused in one line (UndefinedTable), then create, list and revoke work."""
    import uuid

    from tests.conftest import PG_ADMIN_URL, _pg_admin

    data = tmp_path / "data"
    extra: dict[str, str] = {}
    name = f"certpost_cli_{uuid.uuid4().hex[:12]}"
    if backend == "postgres":
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        extra = {"CERTPOST_DATABASE_URL": f"{base}/{name}"}
    else:
        data.mkdir()
        (data / "certpost.db").touch()  # a file, but never migrated

    def run(*args):
        return subprocess.run([CERTPOST, *args], check=False, cwd=tmp_path, env={**_env(data), **extra},
                              capture_output=True, text=True, timeout=60)

    try:
        _one_line_refusal(run("tokens", "list"), "has no certpost tables", "certpost migrate")
        assert run("migrate").returncode == 0
        token = run("tokens", "create", "--role", "admin", "--description", "backend").stdout.strip()
        assert token.startswith("cpt_")
        token_id = token.split("_")[1]
        assert token_id in run("tokens", "list").stdout
        assert run("tokens", "revoke", token_id).stdout.strip() == f"certpost: token {token_id} revoked"
        _one_line_refusal(run("tokens", "revoke", token_id), "already revoked")
    finally:
        if backend == "postgres":
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_serve_leaves_what_start_up_built_out_of_full_collections():
    """`certpost serve` freezes the objects start-up made (app.cli._freeze_startup_heap), so a
    full garbage collection walks only what requests and caches made since: its pauses were
    90-150 ms with them at 10,000 domains' cached pages (docs/performance.md)."""
    import gc

    from app.cli import _freeze_startup_heap

    assert gc.get_freeze_count() == 0
    try:
        _freeze_startup_heap()
        assert gc.get_freeze_count() > 10_000
        assert not gc.get_objects(generation=2)  # nothing left for a full collection to walk
    finally:
        gc.unfreeze()
