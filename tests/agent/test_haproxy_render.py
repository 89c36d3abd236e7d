"""The HAProxy front's files and its reading of the runtime API, as pure functions."""

from __future__ import annotations

import pytest

from app.agent.backends.base import View
from app.agent.backends.haproxy import DEFAULT_FILTER, HaproxyBackend
from app.agent.backends.haproxy_runtime import CrtListEntry, parse_crt_list
from app.agent.config import ConfigError, parse_config

S, A, B = "0" * 64, "a" * 64, "b" * 64


def section(tmp_path, **extra) -> dict:
    return {
        "directory": str(tmp_path / "hx"),
        "runtime_socket": str(tmp_path / "admin.sock"),
        "listeners": [
            {"bind": "0.0.0.0:993", "server": "127.0.0.1:10993"},
            {"bind": "0.0.0.0:995", "server": "127.0.0.1:10995"},
        ],
        **extra,
    }


def backend(tmp_path, **extra) -> HaproxyBackend:
    config = parse_config(
        {
            "agent": {"state_dir": str(tmp_path / "state"), "controller_public_key": "ed25519:x"},
            "haproxy": section(tmp_path, **extra),
        }
    )
    return HaproxyBackend(config.haproxy)


def test_one_bind_line_for_every_port_and_one_backend_each(tmp_path):
    text = backend(tmp_path).render_config().decode()
    binds = [line for line in text.splitlines() if line.strip().startswith("bind ")]
    # One bind line: the certificate lists are loaded once for both ports; the default's list
    # first, then the sixteen lists of names, within HAProxy's 64 words on a line.
    lists = [f"{tmp_path}/hx/certpost.crtlist"] + [f"{tmp_path}/hx/certpost.crtlist.{i:x}" for i in range(16)]
    assert binds == ["    bind 0.0.0.0:993,0.0.0.0:995 ssl " + " ".join(f"crt-list {p}" for p in lists)]
    assert len(binds[0].split()) <= 64
    assert "use_backend certpost_993 if { dst_port 993 }" in text
    assert "server dovecot 127.0.0.1:10995 send-proxy-v2-ssl" in text


def test_crt_list_starts_with_the_default_and_has_one_line_per_name(tmp_path):
    hx = backend(tmp_path)
    out = hx.render(View(S, S, {"mail.b.test": B, "mail.a.test": A, "*.c.test": A, "mail.s.test": S}, {}))
    assert out.files[hx.crt_list].decode().splitlines()[1:] == [f"{hx.default_bundle} {DEFAULT_FILTER}"]
    lines = []
    for shard in hx.crt_shards:
        text = out.files[shard].decode().splitlines()
        names = [line.split(" ")[1] for line in text[1:]]
        assert text[0].startswith("# written") and names == sorted(names)
        assert all(hx.list_of(line.split(" ")[1]) == shard for line in text[1:])  # each in its list
        lines += text[1:]
    assert sorted(lines) == sorted([
        f"{hx.bundle_path(A)} *.c.test",
        f"{hx.bundle_path(A)} mail.a.test",
        f"{hx.bundle_path(B)} mail.b.test",
        f"{hx.bundle_path(S)} mail.s.test",
    ])
    assert set(out.bundles.values()) == {A, B, S}
    # a renewal rewrites the one list of that name; the others are the same bytes objects
    again = hx.render(View(S, S, {"mail.b.test": A, "mail.a.test": A, "*.c.test": A, "mail.s.test": S}, {}))
    assert [p for p in hx.crt_lists if again.files[p] is not out.files[p]] == [hx.list_of("mail.b.test")]


@pytest.mark.parametrize(
    ("listeners", "message"),
    [
        ([], "[haproxy] listeners must be a non-empty list"),
        ([{"bind": "0.0.0.0:993"}], "[haproxy] listeners: each is"),
        ([{"bind": "0.0.0.0:993;x", "server": "127.0.0.1:1"}], "[haproxy] listeners: bind must be"),
        (
            [{"bind": "127.0.0.1:993", "server": "127.0.0.1:1"}, {"bind": "127.0.0.2:993", "server": "127.0.0.1:2"}],
            "[haproxy] listeners: port 993 appears twice",
        ),
    ],
)
def test_listener_mistakes_are_one_line_errors(tmp_path, listeners, message):
    with pytest.raises(ConfigError) as caught:
        backend(tmp_path, listeners=listeners)
    assert str(caught.value).startswith(message)


def test_runtime_crt_list_is_read_with_line_numbers():
    text = (
        "# /x/certpost.crtlist\n"
        f"/x/default.pem:1 {DEFAULT_FILTER}\n"
        "/x/bundles/a.pem:3 mail.a.test\n"
        "/x/bundles/a.pem:7 [alpn h2] *.a.test\n"
    )
    assert parse_crt_list(text) == [
        CrtListEntry("/x/default.pem", 1, (DEFAULT_FILTER,)),
        CrtListEntry("/x/bundles/a.pem", 3, ("mail.a.test",)),
        CrtListEntry("/x/bundles/a.pem", 7, ("*.a.test",)),
    ]


def test_prepare_only_writes_the_front_files_when_the_section_is_added_later(tmp_path):
    """An agent that already applied documents gets [haproxy] added: `certpost agent
    --prepare-only` (run before HAProxy starts) must write the front's files from the applied
    document, or HAProxy would not start."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from app.kit.signing import public_key_to_text
    from tests.support.daemons import bare_stack, bootstrap_agent

    key = public_key_to_text(Ed25519PrivateKey.generate().public_key())
    stack = bare_stack(tmp_path / "agent", key)
    bootstrap_agent(stack)
    out = tmp_path / "hx"
    with open(stack.agent_config, "a") as toml:
        toml.write(
            f'\n[haproxy]\ndirectory = "{out}"\nruntime_socket = "{tmp_path}/admin.sock"\n'
            'listeners = [{bind = "127.0.0.1:993", server = "127.0.0.1:10993"}]\n'
        )
    bootstrap_agent(stack)
    assert (out / "default.pem").exists()
    assert "crt-list" in (out / "certpost.cfg").read_text()
    assert (out / "certpost.crtlist").read_text().splitlines()[1] == f"{out}/default.pem {DEFAULT_FILTER}"


class FakeRuntime:
    """HAProxy's runtime API as lines per crt-list and a set of loaded certificates."""

    def __init__(self, lines: dict) -> None:
        self.lists = {str(k): list(v) for k, v in lines.items()}  # crt-list -> [(path, name)]
        self.certs = {path for v in self.lists.values() for path, _ in v}
        self.commands: list[tuple] = []

    @property
    def lines(self) -> list[tuple[str, str]]:
        return [line for v in self.lists.values() for line in v]

    async def crt_list(self, crt_list):
        return [CrtListEntry(p, i + 1, (n,)) for i, (p, n) in enumerate(self.lists.get(str(crt_list), []))]

    async def load_cert(self, path, pem, *, new):
        self.commands.append(("load", path))
        self.certs.add(path)

    async def add_line(self, crt_list, path, name):
        self.commands.append(("add", name))
        assert path in self.certs
        self.lists.setdefault(str(crt_list), []).append((path, name))

    async def delete_line(self, crt_list, path, line):
        self.commands.append(("del", path))
        lines = self.lists[str(crt_list)]
        if line is None:
            assert sum(p == path for p, _ in lines) == 1
            self.lists[str(crt_list)] = [(p, n) for p, n in lines if p != path]
        else:
            del lines[line - 1]

    async def delete_cert(self, path):
        self.commands.append(("delcert", path))
        assert all(p != path for p, _ in self.lines)
        self.certs.discard(path)


def test_runtime_updates_look_only_at_changed_names_and_match_the_list(tmp_path):
    """After a first full comparison, each update sends commands for the changed names only,
    and the running list always equals the persisted one (shared bundles, removals, moves)."""
    import asyncio

    hb = backend(tmp_path)
    hb.directory.mkdir(parents=True)
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    views = [
        {f"mail.d{i}.test": a for i in range(3)} | {"mail.x.test": b},
        {f"mail.d{i}.test": a for i in range(3)} | {"mail.x.test": c},  # one renewal
        {"mail.d0.test": c, "mail.d1.test": a, "mail.x.test": c},  # a move and a removal
        {"mail.d1.test": b},
    ]
    first = hb.render(View(a, a, views[0], {}))
    for path in hb.crt_lists:
        path.write_bytes(first.files[path])
    running = {hb.crt_list: [(str(hb.default_bundle), DEFAULT_FILTER)]}
    for name, fp in sorted(views[0].items()):
        running.setdefault(hb.list_of(name), []).append((str(hb.bundle_path(fp)), name))
    runtime = hb.runtime = FakeRuntime(running)
    for path in first.bundles:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    for mail in views[1:]:
        out = hb.render(View(a, a, mail, {}))
        for path in hb.crt_lists:
            path.write_bytes(out.files[path])
        for path in out.bundles:
            path.write_bytes(b"x")
        runtime.commands.clear()
        asyncio.run(hb.apply_runtime(set(hb.crt_lists)))
        for crt_list, lines in runtime.lists.items():  # each name's line is in its own list
            assert all(str(hb.list_of(n)) == crt_list for _, n in lines if n != DEFAULT_FILTER)
        assert sorted(n for _, n in runtime.lines if n != DEFAULT_FILTER) == sorted(mail)
        assert {n: p for p, n in runtime.lines if n != DEFAULT_FILTER} == {
            n: str(hb.bundle_path(fp)) for n, fp in mail.items()}
        assert runtime.certs == {p for p, _ in runtime.lines}
        if mail is views[1]:
            assert [c[0] for c in runtime.commands] == ["load", "add", "del", "delcert"]
