#!/usr/bin/env bash
# Installs the npm contract tools (scripts/install-node-tools.sh), then the real servers the test
# suite starts privately on loopback (Postfix, Dovecot, nginx, Courier-IMAP, Pebble, BIND, HAProxy,
# PowerDNS with its HTTP API for the dns-lexicon provider), only
# when one is missing. The system instances are never
# started: the packages' policy keeps them down in containers, and the tests stop nothing but
# their own.
set -euo pipefail
bash "$(dirname "$0")/install-node-tools.sh"
need=()
command -v postfix >/dev/null || need+=(postfix postfix-lmdb)
[ -e /usr/lib/postfix/postfix-lmdb.so ] || need+=(postfix-lmdb)
command -v dovecot >/dev/null || need+=(dovecot-core)
[ -e /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
[ -e /usr/lib/dovecot/pop3 ] || need+=(dovecot-pop3d)
command -v nginx >/dev/null || need+=(nginx-light)
command -v couriertls >/dev/null || need+=(courier-base)
command -v pebble >/dev/null || need+=(pebble)
command -v named >/dev/null || need+=(bind9)
command -v tsig-keygen >/dev/null || need+=(bind9-utils)
command -v openssl >/dev/null || need+=(openssl)
command -v pdns_server >/dev/null || need+=(pdns-server)
[ -e /usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql ] || need+=(pdns-backend-sqlite3)
command -v haproxy >/dev/null || need+=(haproxy)
# Debian's courier-imap conflicts with dovecot-imapd (both provide imap-server): installing it
# would remove Dovecot's IMAP server, so it is unpacked into a private directory instead
# (tests/support/courier.py looks there); couriertcpd and couriertls come from courier-base.
COURIER_IMAP=/opt/certpost-courier-imap
courier_imap_missing() { [ ! -e "$COURIER_IMAP/usr/lib/courier/courier/imaplogin" ]; }
# promtool checks and unit-tests deploy/prometheus/certpost-rules.yml (tests/test_monitoring_rules.py).
# Debian's prometheus package is ~96 MB with 34 recommends and would install a server; its
# promtool runs alone, so the package is unpacked privately (tests look in /opt/certpost-prometheus).
PROMETHEUS=/opt/certpost-prometheus
promtool_missing() { ! command -v promtool >/dev/null && [ ! -x "$PROMETHEUS/usr/bin/promtool" ]; }
if [ ${#need[@]} -eq 0 ] && ! courier_imap_missing && ! promtool_missing; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
[ ${#need[@]} -eq 0 ] || echo "installing test servers: ${need[*]}"
$SUDO apt-get update -qq
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi
if courier_imap_missing; then
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  (cd "$tmp" && $SUDO apt-get download -qq courier-imap)
  $SUDO mkdir -p "$COURIER_IMAP"
  $SUDO dpkg-deb -x "$tmp"/courier-imap_*.deb "$COURIER_IMAP"
  $SUDO rm -rf "$tmp"
fi
if promtool_missing; then
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  (cd "$tmp" && $SUDO apt-get download -qq prometheus)
  $SUDO mkdir -p "$PROMETHEUS"
  $SUDO dpkg-deb -x "$tmp"/prometheus_*.deb "$PROMETHEUS"
  $SUDO rm -rf "$tmp"
fi
