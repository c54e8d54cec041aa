#!/usr/bin/env bash
# schemathesis (property-based testing from the API's own OpenAPI document, every check including
# the authentication ones) against a real `labloop serve`, over a store holding a finished campaign
# and an admin token. Seeded, so a failure reproduces; exits non-zero on any failure or error. One
# worker: with two, hypothesis (4.32.5 on Python 3.11) raced in its own lambda-source parsing.
# Needs: the labloop binary ($LABLOOP_BIN, default the debug build in $CARGO_TARGET_DIR or target/)
# and schemathesis ($SCHEMATHESIS, default `schemathesis`; `.ci/run` installs 4.32.5 in its venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${LABLOOP_BIN:-${CARGO_TARGET_DIR:-target}/debug/labloop}"
ST="${SCHEMATHESIS:-schemathesis}"
dir="$(mktemp -d)"
store="sqlite://$dir/schemathesis.sqlite"
"$BIN" run workflows/fast-charge-clo.yaml --store "$store" --rounds 1 >/dev/null
admin="$("$BIN" token create --role admin --name schemathesis --store "$store" 2>/dev/null)"
port=$((20000 + RANDOM % 20000))
"$BIN" serve --store "$store" --listen "127.0.0.1:$port" >"$dir/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
done
"$ST" run "http://127.0.0.1:$port/api/openapi.json" \
    -H "Authorization: Bearer $admin" \
    --checks all --max-examples 20 --workers 1 --seed 18 --no-color
