"""README.md's "A five-minute tour", run as written (issue 9: the tour showed `trusted: true` for
a certificate that comes out false, and nothing checked it).

The ```` ```sh tour ```` blocks of that section are taken from README.md unchanged and run one
after the other in one bash (their shell variables carry over, as in the reader's terminal),
in an empty directory, against a real `certpost serve` started as the README says (its
environment: CERTPOST_PORT on 127.0.0.1, the data directory in CERTPOST_DATA_DIR, `certpost` on
PATH). Each block's output is checked against its own ``# ->`` lines: ``...`` stands for
anything, ``<...>`` for a value that differs each run, whitespace is ignored, and a
``# ->`` line continues on the ``#`` lines indented under it. Nothing here needs internet access:
the ACME steps, which do, are plain ```` ```sh ```` blocks the test leaves alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.daemons import certpost_command
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## A five-minute tour"


def tour_blocks(readme: str) -> list[str]:
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start:end if end != -1 else None]
    return re.findall(r"^```sh tour\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def expectations(block: str) -> list[str]:
    """The ``# ->`` texts of a block, continuation lines joined."""
    found: list[str] = []
    current: list[str] | None = None
    for line in block.splitlines():
        if line.startswith("# -> "):
            current = [line[len("# -> "):]]
            found.append("")
        elif current is not None and re.match(r"#\s{2,}\S", line):
            current.append(line[1:])
        else:
            current = None
        if current is not None:
            found[-1] = " ".join(current)
    return found


def pattern(expected: str) -> re.Pattern:
    """``...`` any text, ``<...>`` any non-empty value; whitespace removed on both sides."""
    squeezed = re.sub(r"\s+", "", expected)
    parts = re.split(r"(\.\.\.|<[^<>]*>)", squeezed)
    regex = "".join(".*?" if part == "..." else ".+?" if part.startswith("<") else re.escape(part)
                    for part in parts)
    return re.compile(regex, re.DOTALL)


def test_the_pattern_rules():
    assert pattern('{"id": "<x>", ..., "trusted": false, ...}').fullmatch('{"id":"9","a":1,"trusted":false,"b":2}')
    assert not pattern('"trusted": true').search('{"trusted":false}')
    assert expectations("a\n# -> one ...\n#      two\n# note\nb\n# -> three") == ["one ...       two", "three"]


def _marker(index: int) -> str:
    return f"@@tour-block-{index}@@"


def _start_serve(tmp_path: Path, env: dict) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([certpost_command(), "serve"], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    url = f"http://127.0.0.1:{env['CERTPOST_PORT']}/readyz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"certpost serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc, log
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise AssertionError(f"certpost serve did not answer on {url}:\n{log.read_text()}")


def test_the_readme_tour_runs_as_written(tmp_path):
    for tool in ("bash", "curl", "jq", "openssl"):
        assert shutil.which(tool), f"the README tour needs {tool}"
    blocks = tour_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 8, "the tour's ```sh tour blocks were not found"
    assert sum(len(expectations(b)) for b in blocks) >= 12
    assert "openssl" in "".join(blocks), "the tour makes its own test certificate"

    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTPOST_") and k != "XDG_DATA_HOME"}
    env.update(HOME=str(tmp_path / "home"), CERTPOST_DATA_DIR=str(tmp_path / "data"),
               CERTPOST_PORT=str(free_port()), PATH=f"{Path(certpost_command()).parent}:{env.get('PATH', '')}")
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    script = "set -e -o pipefail\n" + "".join(
        f"{block}\nprintf '\\n%s\\n' '{_marker(i)}'\n" for i, block in enumerate(blocks))
    proc, log = _start_serve(tmp_path, env)
    try:
        ran = subprocess.run(["bash", "-c", script], cwd=work, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                             check=False)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    output = ran.stdout
    assert ran.returncode == 0, f"the tour stopped (exit {ran.returncode}):\n{output}"
    assert "shown only this once" in log.read_text()
    assert "alembic" not in output.lower()  # `certpost tokens ...` in the tour: no migration chatter

    rest = output
    for index, block in enumerate(blocks):
        shown, _, rest = rest.partition(_marker(index))
        squeezed = re.sub(r"\s+", "", shown)
        position = 0
        for expected in expectations(block):
            found = pattern(expected).search(squeezed, position)
            assert found, f"tour block {index}: no {expected!r} in its output:\n{shown}\n--- block:\n{block}"
            position = found.end()
        assert "Traceback" not in shown and "curl:" not in shown, shown


def test_make_run_takes_host_and_port():
    """README: `make run PORT=8080 HOST=0.0.0.0`; unset, the settings (CERTPOST_PORT, ...) decide."""
    given = subprocess.run(["make", "-n", "run", "PORT=8080", "HOST=0.0.0.0"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60, check=True).stdout
    assert "certpost serve --host 0.0.0.0 --port 8080" in given
    plain = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           check=True).stdout
    assert re.search(r"certpost serve\s*$", plain, re.MULTILINE), plain
