"""What each backend writes for a desired configuration, and the pure rules around it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.agent.backends.base import BundleRef, View
from app.agent.backends.dovecot import DovecotBackend
from app.agent.backends.nginx import NginxBackend
from app.agent.backends.postfix import PostfixBackend, shard_of
from app.agent.bundles import BundleError, build_bundle
from app.agent.config import ConfigError, parse_config
from app.agent.desired import BundleIn, Desired
from app.agent.state import NonceLedger
from app.agent.verify import UNKNOWN_NAME, plan, sample_names
from tests.support.pki import CA

S, A, B = "0" * 64, "a" * 64, "b" * 64
VIEW = View(
    S,
    S,
    {"mail.a.test": A, "mail.b.test": A, "mail.c.test": S, "*.d.test": B},
    {"webmail.a.test": A, "webmail.b.test": B},
)


def config(tmp_path: Path, **testing):
    return parse_config(
        {
            "listen": {"host": "127.0.0.1", "port": 1},
            "agent": {"state_dir": str(tmp_path / "state"), "controller_public_key": "ed25519:x"},
            "postfix": {
                "directory": str(tmp_path / "pf"),
                "verify": [{"port": 25, "protocol": "smtp-starttls"}],
            },
            "dovecot": {
                "directory": str(tmp_path / "dc"),
                "main_config": "/etc/dovecot/dovecot.conf",
                "verify": [{"port": 993, "protocol": "imaps"}],
            },
            "nginx": {
                "directory": str(tmp_path / "ng"),
                "listen": ["127.0.0.1:8443"],
                "verify": [{"port": 8443, "protocol": "https"}],
            },
            "testing": testing,
        }
    )


def test_postfix_map_has_one_key_per_name_and_skips_the_default(tmp_path):
    pf = PostfixBackend(config(tmp_path).postfix)
    out = pf.render(VIEW)
    shards = {live: out.files[live].decode().splitlines() for live in pf.map_sources.values()}
    assert len(shards) == 256 and all(lines[0].startswith("# written") for lines in shards.values())
    entries = sorted(line for lines in shards.values() for line in lines[1:])
    assert entries == [
        f".d.test\t{pf.bundle_dir}/{B}.pem",
        f"mail.a.test\t{pf.bundle_dir}/{A}.pem",
        f"mail.b.test\t{pf.bundle_dir}/{A}.pem",
    ]
    for key in (".d.test", "mail.a.test", "mail.b.test"):  # each key in the shard of its hash
        assert any(line.startswith(key + "\t") for line in shards[pf.map_sources[shard_of(key)]])
    assert out.files[pf.default_bundle] == BundleRef(S)
    assert set(out.bundles.values()) == {A, B}


def test_postfix_shards_are_stable_and_listed_in_order(tmp_path):
    pf = PostfixBackend(config(tmp_path).postfix, {"map_type": "lmdb"})
    assert shard_of("mail.a.test") == hashlib.sha256(b"mail.a.test").hexdigest()[:2]
    assert shard_of("mail.a.test", 16) == hashlib.sha256(b"mail.a.test").hexdigest()[0]
    assert pf.sni_maps_value() == ", ".join(f"lmdb:{tmp_path}/pf/sni.{i:02x}" for i in range(256))
    assert pf.sni_maps_value(16) == ", ".join(
        f"lmdb:{tmp_path}/pf/sni.{i}" for i in "0123456789abcdef"
    )
    # one changed name changes exactly one shard
    before = pf.render(VIEW).files
    after = pf.render(View(S, S, {**VIEW.mail, "mail.a.test": B}, VIEW.webmail)).files
    assert [p.name for p in before if before[p] != after[p]] == [f"sni.{shard_of('mail.a.test')}"]


def test_incremental_renders_equal_fresh_ones(tmp_path):
    """Postfix re-renders only the shards of changed names and nginx reuses its include file
    while the names stay: after any sequence of views, each render equals a fresh backend's."""
    pf, ng = PostfixBackend(config(tmp_path).postfix), NginxBackend(config(tmp_path).nginx)
    views = [
        VIEW,
        View(S, S, {**VIEW.mail, "mail.a.test": B}, {**VIEW.webmail, "webmail.a.test": B}),  # a renewal
        View(S, S, {"mail.a.test": S, "mail.e.test": A, "*.d.test": B}, {"webmail.e.test": A}),
        View(A, S, {"mail.a.test": A, "mail.e.test": B}, {"webmail.e.test": A}),  # new server-wide
        View(A, S, {}, {}, autoconfig={"e.test": "mail.e.test"}),
    ]
    for view in views:
        for backend, cls, section in ((pf, PostfixBackend, "postfix"), (ng, NginxBackend, "nginx")):
            out = backend.render(view)
            fresh = cls(getattr(config(tmp_path / "fresh"), section)).render(view)
            rebase = {p.relative_to(tmp_path / "fresh"): c for p, c in fresh.files.items()}
            assert {p.relative_to(tmp_path): c for p, c in out.files.items()} == {
                p: (c.replace(str(tmp_path / "fresh").encode(), str(tmp_path).encode())
                    if isinstance(c, bytes) else c) for p, c in rebase.items()}
            assert {p.relative_to(tmp_path) for p in out.bundles} == {
                p.relative_to(tmp_path / "fresh") for p in fresh.bundles}
    unchanged = pf.render(views[-1])
    again = pf.render(views[-1])
    assert all(again.files[p] is unchanged.files[p] for p in pf.map_sources.values())


def test_postfix_test_hook_writes_certificate_first(tmp_path):
    pf = PostfixBackend(config(tmp_path).postfix, {"cert_first": True})
    assert pf.bundle_bytes(b"KEY", b"CERT") == b"CERTKEY"
    assert pf.bundle_path(A).name == f"{A}.certfirst.pem"


def test_dovecot_one_block_per_certificate(tmp_path):
    dc = DovecotBackend(config(tmp_path).dovecot)
    text = dc.render(VIEW).files[dc.include_file].decode()
    assert text.count("local_name") == 2
    assert f'local_name "mail.a.test mail.b.test" {{\n  ssl_cert = <{dc.bundle_dir}/{A}.pem' in text
    assert 'local_name "*.d.test" {' in text
    assert "mail.c.test" not in text  # served by the default certificate anyway
    assert text.splitlines()[1] == f"ssl_cert = <{dc.bundle_dir}/{S}.pem"


def test_dovecot_rendering_is_stable(tmp_path):
    dc = DovecotBackend(config(tmp_path).dovecot)
    shuffled = View(S, S, dict(reversed(list(VIEW.mail.items()))), VIEW.webmail)
    assert dc.render(VIEW).files == dc.render(shuffled).files


def test_nginx_one_server_and_a_map(tmp_path):
    ng = NginxBackend(config(tmp_path).nginx)
    text = ng.render(VIEW).files[ng.include_file].decode()
    assert text.count("server {") == 1
    assert "location @certpost_autodiscover {" in text  # autoconfiguration, in the same server
    assert "map $ssl_server_name $certpost_bundle {\n    hostnames;\n" in text
    # Name-addressed bundle files: a certificate change rewrites one file, not the map.
    by_name = ng.bundle_dir / "by-name"
    assert f"    default {by_name}/_default.pem;\n" in text
    assert f"    webmail.b.test {by_name}/webmail.b.test.pem;\n" in text
    files = ng.render(VIEW).files
    assert files[by_name / "_default.pem"] == BundleRef(S)
    assert files[by_name / "webmail.b.test.pem"] == BundleRef(B)
    assert not ng.render(VIEW).bundles
    assert ng.name_path("*.a.test").name == "_2a.a.test.pem"
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57]) + ".test"  # 253 characters
    assert ng.name_path(longest).name.startswith("_h") and len(ng.name_path(longest).name) < 80
    assert ng.name_path(longest) != ng.name_path(longest[:-1] + "x")
    assert (
        "ssl_certificate $certpost_bundle;" in text
        and "ssl_certificate_key $certpost_bundle;" in text
    )
    assert 'location / {\n        return 200 "webmail\\n";' in text
    assert "acme-challenge" not in text  # no http_listen: no plain-HTTP server


def test_nginx_http01_server(tmp_path):
    cfg = config(tmp_path)
    ng = NginxBackend(cfg.nginx, {"http_listen": ["0.0.0.0:80", "[::]:80"]})
    text = ng.render(VIEW).files[ng.include_file].decode()
    assert text.count("server {") == 2
    http = text[text.rindex("server {") :]
    assert "    listen 0.0.0.0:80 default_server;\n    listen [::]:80 default_server;\n" in http
    assert "ssl" not in http
    assert (
        "    location ^~ /.well-known/acme-challenge/ {\n"
        "        default_type application/octet-stream;\n"
        f"        alias {tmp_path}/ng/acme-challenge/;\n    }}\n"
    ) in http
    assert "return 404;" in http
    assert NginxBackend(cfg.nginx, {"http_listen": "127.0.0.1:5002"}).http_listen == [
        "127.0.0.1:5002"
    ]
    for bad in (80, ["127.0.0.1:80; include /etc/passwd"]):
        with pytest.raises(ConfigError, match="http_listen"):
            NginxBackend(cfg.nginx, {"http_listen": bad})


def test_verification_sample_puts_changes_first():
    before = {f"n{i}.test": A for i in range(10)}
    now = {**before, "n5.test": B, "new.test": B}
    del now["n9.test"]
    picks = sample_names(now, before, S, limit=4)
    assert picks[:3] == [("n5.test", B), ("n9.test", S), ("new.test", B)]
    assert len(picks) == 4


def test_verification_sample_equals_sorting_every_name():
    """The sample is found without a pass over every name (set operations, remembered smallest
    names); it is exactly what sorting all of them gives, for any change."""
    import random

    from app.agent.verify import _under_wildcard

    def reference(names, previous, default, limit):
        expected = dict(names)
        for removed in previous.keys() - names.keys():
            if not _under_wildcard(removed, names):
                expected[removed] = default
        changed = sorted(n for n in expected if previous.get(n) != expected[n] or n not in names)
        stable = sorted(n for n in expected if n not in changed)
        return [(n, expected[n]) for n in (changed + stable)[:limit]]

    rng = random.Random(12)
    pool = [f"mail.d{i}.test" for i in range(30)] + ["*.w.test", "mail.w.test"]
    for _ in range(2000):
        previous = {n: rng.choice("ABD") for n in rng.sample(pool, rng.randrange(0, 20))}
        names = ({n: rng.choice("ABD") for n in previous} if rng.random() < 0.5
                 else {n: rng.choice("ABD") for n in rng.sample(pool, rng.randrange(0, 20))})
        limit = rng.randrange(0, 30)
        assert sample_names(names, previous, "D", limit) == reference(names, previous, "D", limit)


def test_a_removed_name_under_a_bound_wildcard_is_not_expected_to_get_the_default():
    before = {"*.c.test": A, "mail.c.test": B, "x.y.c.test": B, "mail.d.test": B}
    now = {"*.c.test": A}
    picks = dict(sample_names(now, before, S, limit=10))
    assert "mail.c.test" not in picks and "x.y.c.test" not in picks  # the wildcard answers
    assert picks["mail.d.test"] == S


def test_plan_always_probes_no_sni_and_an_unknown_name(tmp_path):
    cfg = config(tmp_path)
    probes = plan([PostfixBackend(cfg.postfix), NginxBackend(cfg.nginx)], VIEW, None, limit=2)
    smtp = [(p.sni, p.expected) for p in probes if p.port == 25]
    assert smtp[:2] == [(None, S), (UNKNOWN_NAME, S)] and len(smtp) == 4
    assert ("certpost-probe.d.test", B) in smtp  # a wildcard binding is probed with a name under it
    https = [(p.sni, p.expected) for p in probes if p.port == 8443]
    assert (None, S) in https and ("webmail.b.test", B) in https


@pytest.fixture(scope="module")
def issued():
    root = CA.create("render test root")
    inter = root.intermediate("render test intermediate")
    return inter, inter.issue(["mail.a.test"]), inter.issue(["mail.b.test"])


def test_bundle_checks(issued):
    _, good, other = issued
    key, certs = build_bundle(
        good.fingerprint,
        BundleIn(key_pem=good.key_pem, certificate_pem=good.cert_pem, chain_pem=good.chain_pem),
    )
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----") and certs.count(b"BEGIN CERTIFICATE") == 2
    cases = [
        (
            good.fingerprint,
            {"key_pem": other.key_pem, "certificate_pem": good.cert_pem},
            "does not belong",
        ),
        (
            other.fingerprint,
            {"key_pem": good.key_pem, "certificate_pem": good.cert_pem},
            "fingerprint",
        ),
        (
            good.fingerprint,
            {
                "key_pem": good.key_pem,
                "certificate_pem": good.cert_pem,
                "chain_pem": other.cert_pem,
            },
            "not issued by",
        ),
        (good.fingerprint, {"key_pem": "junk", "certificate_pem": good.cert_pem}, "private key"),
    ]
    for fp, fields, words in cases:
        with pytest.raises(BundleError) as err:
            build_bundle(fp, BundleIn(**fields))
        assert words in str(err.value)
        assert good.key_pem.splitlines()[1] not in str(err.value)  # never key material


def test_desired_refuses_names_that_could_inject_configuration():
    base = {"generation": 1, "server_hostname": "mx", "server_certificate": S, "webmail_default": S}
    Desired.model_validate({**base, "mail": {"mail.a.test": A, "*.b.test": A}})
    for bad in ('mail.a.test" {', "mail.a.test;", "Mail.A.test", "a b"):
        with pytest.raises(ValueError):
            Desired.model_validate({**base, "mail": {bad: A}})
    with pytest.raises(ValueError):
        Desired.model_validate({**base, "server_certificate": "XYZ"})


def test_nonce_ledger_refuses_replays_and_forgets_old_nonces(tmp_path):
    ledger = NonceLedger.open(tmp_path / "nonces.json", max_age=600)
    assert ledger.remember("n1", 1000, now=1000)
    assert not NonceLedger.open(tmp_path / "nonces.json", 600).remember("n1", 1000, now=1001)
    assert ledger.remember("n2", 2000, now=2000)
    assert "n1" not in ledger.seen  # older than twice the skew window


def test_postfix_validate_requires_main_cf_to_list_the_shards(tmp_path):
    import asyncio
    import shutil

    from app.agent.backends.base import StepError

    if shutil.which("postconf") is None:
        pytest.skip("postconf is not installed")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "master.cf").write_text("")
    pf = PostfixBackend(config(tmp_path).postfix, {"map_type": "lmdb", "config_directory": etc})
    main_cf = etc / "main.cf"
    main_cf.write_text(f"tls_server_sni_maps = lmdb:{pf.directory}/sni\n")  # the old single table
    with pytest.raises(StepError) as refused:
        asyncio.run(pf.check_main_cf())
    assert refused.value.step == "validate" and pf.sni_maps_value() in refused.value.message
    first, *rest = pf.sni_maps_value().split(", ")
    main_cf.write_text(f"tls_server_sni_maps = {first},\n    " + ",\n    ".join(rest) + "\n")
    asyncio.run(pf.check_main_cf())  # continuation lines are fine
    assert pf.layout == 256 and pf.layouts == (256,)
    main_cf.write_text(f"tls_server_sni_maps = {pf.sni_maps_value(16)}\n")  # an install before 256
    asyncio.run(pf.check_main_cf())
    assert pf.layout == 16 and pf.layouts == (256, 16)
    main_cf.write_text(f"tls_server_sni_maps = {pf.sni_maps_value()}, lmdb:/etc/postfix/extra\n")
    with pytest.raises(StepError):
        asyncio.run(pf.check_main_cf())
    asyncio.run(pf.prepare(live=False))  # the bootstrap writes files before main.cf is right


def _postfix_with_main_cf(tmp_path, line: str):
    import shutil

    if shutil.which("postconf") is None:
        pytest.skip("postconf is not installed")
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "master.cf").write_text("")
    (etc / "main.cf").write_text(line)
    return PostfixBackend(config(tmp_path).postfix, {"map_type": "lmdb", "config_directory": etc}), etc / "main.cf"


def test_postfix_keeps_an_existing_16_shard_install_and_the_256_tables_beside_it(tmp_path):
    """main.cf naming the 16 tables of earlier versions keeps working: both layouts are
    written (the 16 that Postfix reads, the 256 that switching the line will read), each key
    in the shard of its hash in each; once main.cf names the 256, the 16 files are removed."""
    import asyncio

    pf, main_cf = _postfix_with_main_cf(tmp_path, "")
    main_cf.write_text(f"tls_server_sni_maps = {pf.sni_maps_value(16)}\n")
    asyncio.run(pf.prepare(live=True))
    out = pf.render(VIEW)
    sources = {p.name: c for p, c in out.files.items() if p.name.startswith("sni.")}
    assert len(sources) == 256 + 16
    for shards, digits in ((256, 2), (16, 1)):
        entries = []
        for name, text in sources.items():
            if len(name) == 4 + digits:
                lines = text.decode().splitlines()[1:]
                entries += lines
                assert all(shard_of(line.split("\t")[0], shards) == name[4:] for line in lines)
        assert sorted(entries) == [
            f".d.test\t{pf.bundle_dir}/{B}.pem",
            f"mail.a.test\t{pf.bundle_dir}/{A}.pem",
            f"mail.b.test\t{pf.bundle_dir}/{A}.pem",
        ]
    # a renewal re-renders one shard of each layout
    after = pf.render(View(S, S, {**VIEW.mail, "mail.a.test": B}, VIEW.webmail))
    differ = sorted(p.name for p in after.files if p.name.startswith("sni.") and after.files[p] != out.files[p])
    assert differ == sorted([f"sni.{shard_of('mail.a.test')}", f"sni.{shard_of('mail.a.test', 16)}"])
    pf.directory.mkdir(parents=True, exist_ok=True)
    for path, content in after.files.items():
        if isinstance(content, bytes):
            path.write_bytes(content)
            pf.map_file(path).write_bytes(b"table")
    main_cf.write_text(f"tls_server_sni_maps = {pf.sni_maps_value()}\n")  # the operator switches
    asyncio.run(pf.prepare(live=True))
    switched = pf.render(VIEW)
    assert len([p for p in switched.files if p.name.startswith("sni.")]) == 256
    legacy = {f"sni.{i}" for i in "0123456789abcdef"}
    assert {p.name for p in switched.remove} == legacy | {f"{n}.lmdb" for n in legacy}
    for path in switched.remove:
        path.unlink()
    assert pf.render(VIEW).remove == []


def test_postfix_refuses_a_main_cf_without_the_shards(tmp_path):
    import asyncio

    from app.agent.backends.base import StepError

    pf, _ = _postfix_with_main_cf(tmp_path, "smtpd_tls_security_level = may\n")
    asyncio.run(pf.prepare(live=True))  # read before rendering; refused when Postfix changes
    with pytest.raises(StepError) as refused:
        asyncio.run(pf.validate({}))
    message = refused.value.message
    assert refused.value.step == "validate" and f"tls_server_sni_maps = {pf.sni_maps_value()}" in message
    assert "sni.0" in message and "sni.f" in message  # the 16-shard line is named as accepted


def _delta_views(rng, count: int):
    """Views each made from the one before by a few named changes (as app.agent.service makes
    a delta's), starting from a full one: names added, renewed, moved to the default, removed."""
    pool = [f"mail.d{i}.test" for i in range(40)] + ["*.w.test", "mail.w.test", "w.test"]
    fps = [S, A, B, "c" * 64, "d" * 64]
    mail = {n: rng.choice(fps) for n in rng.sample(pool, 20)}
    webmail = {n.replace("mail.", "webmail."): rng.choice(fps) for n in rng.sample(pool, 15)}
    view = View(S, S, mail, webmail, "mx.test", {"d1.test": "mail.d1.test"})
    yield view
    for _ in range(count):
        mail, webmail, autoconfig = dict(view.mail), dict(view.webmail), dict(view.autoconfig)
        named = {"mail": set(), "webmail": set(), "autoconfig": set()}
        if rng.random() < 0.2:  # a domain's autoconfiguration host changes, or goes
            domain = f"d{rng.randrange(5)}.test"
            if rng.random() < 0.3:
                autoconfig.pop(domain, None)
            else:
                autoconfig[domain] = rng.choice([f"mail.{domain}", "mx.test"])
            named["autoconfig"].add(domain)
        for service, target in (("mail", mail), ("webmail", webmail)):
            for _ in range(rng.randrange(0, 4)):
                name = rng.choice(pool)
                name = name if service == "mail" else name.replace("mail.", "webmail.")
                if rng.random() < 0.25:
                    target.pop(name, None)
                else:
                    target[name] = rng.choice(fps)
                named[service].add(name)
            if rng.random() < 0.2:  # a superset is allowed: an unchanged name named
                named[service].add(rng.choice(list(target) or ["x.test"]))
        view = View(S, S, mail, webmail, "mx.test", autoconfig, base=view.token, changed=named)
        yield view


def _fresh_conflicts(make, root, view):
    backend = make(root)
    backend.render(view)
    return backend.conflicts


def test_renders_by_named_changes_equal_fresh_renders(tmp_path):
    """Postfix, nginx and HAProxy render a view made from the one they rendered last by its
    named changes alone; after any sequence of such deltas (and a view out of sequence, which
    they compare in full), each render equals a fresh backend's, and the bundle paths a render
    says it added and dropped are exactly the difference from the render before."""
    import random

    from tests.agent.test_haproxy_render import backend as haproxy_backend

    rng = random.Random(8)
    from app.agent.backends.courier import CourierBackend

    def courier(root):
        section = {"directory": str(root / "co"), "verify": [{"port": 993, "protocol": "imaps"}]}
        return CourierBackend(parse_config({
            "agent": {"state_dir": str(root / "state"), "controller_public_key": "ed25519:x"},
            "courier": section,
        }).courier)

    made = {
        "pf": lambda root: PostfixBackend(config(root).postfix),
        "ng": lambda root: NginxBackend(config(root).nginx),
        "hx": lambda root: haproxy_backend(root),
        "co": courier,
        "dc": lambda root: DovecotBackend(config(root).dovecot),
    }
    backends = {key: make(tmp_path / "inc") for key, make in made.items()}
    last = {key: None for key in made}
    views = list(_delta_views(rng, 60))
    views.insert(30, View(S, S, dict(views[10].mail), dict(views[10].webmail), "mx.test",
                          dict(views[10].autoconfig)))  # out of sequence
    for view in views:
        for key, make in made.items():
            out = backends[key].render(view)
            fresh = make(tmp_path / "fresh").render(view)
            def rel(files, root):
                return {p.relative_to(root): (c.replace(str(root).encode(), b"ROOT") if isinstance(c, bytes) else c)
                        for p, c in files.items()}
            assert rel(out.files, tmp_path / "inc") == rel(fresh.files, tmp_path / "fresh"), key
            if key == "co":
                assert backends[key].conflicts == _fresh_conflicts(make, tmp_path / "fresh3", view)
            assert {p.relative_to(tmp_path / "inc") for p in out.bundles} == {
                p.relative_to(tmp_path / "fresh") for p in fresh.bundles}, key
            before = last[key]
            if out.added is not None and before is not None and key != "ng":
                assert set(out.bundles) == (before - out.dropped) | set(out.added), key
            last[key] = set(out.bundles)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("listen", "port", "x", "[listen] port must be a number"),
        ("listen", "port", 99999, "[listen] port must be at most 65535"),
        ("listen", "port", 0, "[listen] port must be a number above 0"),
        ("agent", "verify_timeout", -5, "[agent] verify_timeout must be a number above 0"),
        ("agent", "verify_timeout", "5", "[agent] verify_timeout must be a number"),
        ("agent", "verify_sample", 0, "[agent] verify_sample must be a number above 0"),
        ("agent", "verify_sample", 2.5, "[agent] verify_sample must be a whole number"),
        ("agent", "max_skew", 0, "[agent] max_skew must be a number above 0"),
        ("nginx", "enabled", "no", "[nginx] enabled must be true or false"),
        ("nginx", "enabled", 0, "[nginx] enabled must be true or false"),
    ],
)
def test_config_numbers_and_switches_are_checked_with_the_key_named(tmp_path, section, key, value, message):
    """docs/agent.md: a wrong configuration exits with one line naming the TOML key. A bare
    int()/float() raised a ValueError traceback for "x" and accepted 99999, -5 and 0; a string
    `enabled = "no"` is truthy in Python, so it *enabled* the daemon."""
    data = {
        "listen": {"host": "127.0.0.1", "port": 1},
        "agent": {"state_dir": str(tmp_path / "state"), "controller_public_key": "ed25519:x"},
        "nginx": {"directory": str(tmp_path / "ng"), "bundle_group": ""},
    }
    data[section][key] = value
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert str(caught.value).startswith(message)


def test_config_accepts_the_documented_values(tmp_path):
    parsed = parse_config(
        {
            "listen": {"port": 8750},
            "agent": {"state_dir": str(tmp_path), "controller_public_key": "ed25519:x", "verify_timeout": 5,
                      "verify_sample": 24, "max_skew": 300},
            "nginx": {"enabled": False, "directory": str(tmp_path / "ng")},
        }
    )
    assert (parsed.listen_port, parsed.verify_timeout, parsed.verify_sample, parsed.max_skew) == (8750, 5.0, 24, 300)
    assert isinstance(parsed.listen_port, int) and isinstance(parsed.verify_timeout, float)
    assert parsed.nginx is None
    parsed = parse_config({"agent": {"state_dir": str(tmp_path), "controller_public_key": "ed25519:x",
                                     "hostname": "MX1.Host.TEST."}})
    assert parsed.hostname == "mx1.host.test"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"nginx": {"verify": [443]}}, "[nginx] verify must be a list of"),
        ({"nginx": {"verify": "443"}}, "[nginx] verify must be a list of"),
        ({"nginx": {"directory": 5}}, "[nginx] directory is required"),
        ({"nginx": {"main_config": 5}}, "[nginx] main_config must be a path"),
        ({"agent": {"hostname": 5}}, "[agent] hostname must be a non-empty string"),
        ({"agent": {"hostname": "bad host"}}, "[agent] hostname 'bad host' is not a host name"),
        ({"listen": {"host": 5}}, "[listen] host must be a non-empty string"),
        ({"ngnix": {"directory": "/x"}}, "unknown key: ngnix"),
        ({"agent": {"verify_timout": 5}}, "[agent] unknown key: verify_timout"),
        ({"listen": {"max_body": 5}}, "[listen] unknown key: max_body"),
    ],
)
def test_config_shapes_and_misspellings_are_one_line_errors(tmp_path, patch, message):
    """Each of these was an AttributeError/TypeError traceback, a bootstrap certificate for
    'bad host', or (a misspelt section or key) silently ignored: `[ngnix]` left nginx unmanaged."""
    data = {
        "listen": {"host": "127.0.0.1", "port": 1},
        "agent": {"state_dir": str(tmp_path / "state"), "controller_public_key": "ed25519:x",
                  "hostname": "mx1.host.test"},
        "nginx": {"directory": str(tmp_path / "ng"), "bundle_group": ""},
    }
    for section, values in patch.items():
        data.setdefault(section, {}).update(values)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert str(caught.value).startswith(message)
