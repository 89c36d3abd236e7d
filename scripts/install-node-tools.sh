#!/usr/bin/env bash
# Installs the npm tools the contract tests run (tests/test_contract_tools.py) into .tools/node:
# @redocly/cli (the OpenAPI linter), openapi-typescript (the client generator) and typescript
# (tsc), at the versions pinned in scripts/node-tools/package.json and package-lock.json. Project
# local and gitignored; `npm ci` runs again only when the lock file changed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing nodejs and npm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
dest=.tools/node
if cmp -s scripts/node-tools/package-lock.json "$dest/package-lock.json" && [ -x "$dest/node_modules/.bin/redocly" ]; then
  exit 0
fi
mkdir -p "$dest"
cp scripts/node-tools/package.json scripts/node-tools/package-lock.json "$dest/"
echo "installing the contract tools (redocly, openapi-typescript, typescript) into $dest"
(cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
