#!/usr/bin/env bash
# Checks asyncapi.yaml with the AsyncAPI parser from npm (pinned in tests/asyncapi/package-lock.json,
# installed under .local/asyncapi when the pins change). That the code sends what it describes is
# checked by the cargo tests (test_support::asyncapi validates every order and event they see).
set -euo pipefail
. "$(dirname "$0")/lib/local-platform.sh"
cd "$REPO_ROOT"

ensure_packages nodejs
# Debian's nodejs has npm apart; NodeSource's (which conflicts with Debian's npm) has it inside.
command -v npm >/dev/null || ensure_packages npm
tools="$LOCAL_DIR/asyncapi"
if ! cmp -s tests/asyncapi/package-lock.json "$tools/package-lock.json" 2>/dev/null; then
    log "installing the AsyncAPI parser (npm)"
    rm -rf "$tools"
    mkdir -p "$tools"
    cp tests/asyncapi/package.json tests/asyncapi/package-lock.json "$tools/"
    (cd "$tools" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
cp tests/asyncapi/validate.mjs "$tools/"
node "$tools/validate.mjs" asyncapi.yaml
