#!/usr/bin/env bash
# Installs the real servers the test suite starts privately on loopback (Postfix, Dovecot,
# nginx, Pebble, BIND), only when one is missing. The system instances are never started:
# the packages' policy keeps them down in containers, and the tests stop nothing but their own.
set -euo pipefail
need=()
command -v postfix >/dev/null || need+=(postfix postfix-lmdb)
[ -e /usr/lib/postfix/postfix-lmdb.so ] || need+=(postfix-lmdb)
command -v dovecot >/dev/null || need+=(dovecot-core)
[ -e /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
[ -e /usr/lib/dovecot/pop3 ] || need+=(dovecot-pop3d)
command -v nginx >/dev/null || need+=(nginx-light)
command -v pebble >/dev/null || need+=(pebble)
command -v named >/dev/null || need+=(bind9)
command -v tsig-keygen >/dev/null || need+=(bind9-utils)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing test servers: ${need[*]}"
$SUDO apt-get update -qq
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
