#!/usr/bin/env bash
# What `make bench` needs besides the test servers: wrk (the HTTP load generator bench/reads.py
# drives), installed from Debian only when missing.
set -euo pipefail
command -v wrk >/dev/null && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing bench tools: wrk"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null
