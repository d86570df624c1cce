#!/usr/bin/env bash
# The API against its own schema: no 5xx on any input, and every response as the schema
# says. Run by .ci/run; runnable alone from the repository's root:
#   .ci/schemathesis.sh
# It builds a fresh PostgreSQL database (dropped and created: give it a name of its own),
# loads the demo into it, serves the site on loopback with DEBUG off, and runs schemathesis
# once each with a finance user's token, a team member's, the gateway's and the ERP's, failing
# on any finding.
#
# Environment (defaults in brackets):
#   SCHEMATHESIS_DATABASE_URL  the database to (re)create  [postgres://postgres@127.0.0.1:5432/chargeback_schemathesis]
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase  [30]
#   SCHEMATHESIS_SEED          the generator's seed, so a run can be repeated  [20260501]
#   SCHEMATHESIS_REPORT_DIR    where the JUnit reports go  [var/schemathesis]
#   SCHEMATHESIS_ACTORS        whose tokens to run with  [finance member gateway erp]
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATABASE_URL=${SCHEMATHESIS_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chargeback_schemathesis}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-30}
SEED=${SCHEMATHESIS_SEED:-20260501}
REPORT_DIR=${SCHEMATHESIS_REPORT_DIR:-var/schemathesis}
FINANCE_USER=finance # the demo's login (chargeback/demo/organization.py): a finance approver
MEMBER_USER=arjun    # the demo's member of CC-1210: files disputes on its statement's lines
ACTORS=${SCHEMATHESIS_ACTORS:-finance member gateway erp}

# The served site: production-like (DEBUG off, so an error is a 500 and not a debug page),
# Celery eager (no broker: a queued task runs in the request), files in a scratch folder.
export DATABASE_URL DJANGO_DEBUG=0
scratch=
if [[ -z ${CHARGEBACK_MEDIA_ROOT:-} ]]; then
	scratch=$(mktemp -d -t chargeback-schemathesis-XXXXXX)
	export CHARGEBACK_MEDIA_ROOT=$scratch
fi
unset CELERY_BROKER_URL CELERY_RESULT_BACKEND CHARGEBACK_CACHE_URL
mkdir -p "$REPORT_DIR"

database_recreate() {
	"$PY" - "$DATABASE_URL" <<'EOF'
import sys

import dj_database_url
import psycopg
from psycopg import sql

cfg = dj_database_url.parse(sys.argv[1])
server = {key: cfg.get(key.upper()) or None for key in ("user", "password", "host", "port")}
with psycopg.connect(dbname="postgres", autocommit=True, **server) as connection:
    name = sql.Identifier(cfg["NAME"])
    connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    connection.execute(sql.SQL("CREATE DATABASE {}").format(name))
print(f"database {cfg['NAME']}: created")
EOF
}

# An API token from `manage.py api_token issue`, printed alone: api_token SCOPE [USER]
api_token() {
	"$PY" manage.py api_token issue --name "schemathesis $1" --scope "$1" ${2:+--user "$2"} |
		"$PY" -c "import json, sys; print(json.load(sys.stdin)['token'])"
}

free_port() {
	"$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}

server_pid=
server_stop() {
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill "$server_pid"
		wait "$server_pid" 2>/dev/null || true
	fi
	if [[ -n $scratch ]]; then rm -rf "$scratch"; fi
}
trap server_stop EXIT

database_recreate
"$PY" manage.py migrate --no-input -v 0
# A small demo: every endpoint has rows to answer with, and it loads in seconds.
"$PY" manage.py demo --scale 0.05 >/dev/null
echo "demo loaded"
finance_token=$(api_token user "$FINANCE_USER")
member_token=$(api_token user "$MEMBER_USER")
gateway_token=$(api_token gateway)
erp_token=$(api_token erp)
[[ -n $finance_token && -n $member_token && -n $gateway_token && -n $erp_token ]] || {
	echo "no API token was made" >&2
	exit 1
}

port=$(free_port)
base=http://127.0.0.1:$port
"$PY" manage.py runserver "127.0.0.1:$port" --noreload --skip-checks >"$REPORT_DIR/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 60); do
	curl -fsS -o /dev/null "$base/login/" 2>/dev/null && break
	kill -0 "$server_pid" 2>/dev/null || {
		cat "$REPORT_DIR/server.log" >&2
		exit 1
	}
	sleep 0.5
done
echo "serving $base (log: $REPORT_DIR/server.log)"

failed=0
for who in $ACTORS; do
	token_var=${who}_token
	echo
	echo "---- schemathesis as $who ----"
	"$(dirname "$PY")/schemathesis" run "$base/api/v1/schema/" \
		--header "Authorization: Bearer ${!token_var}" \
		--checks not_a_server_error,response_schema_conformance \
		--max-examples "$MAX_EXAMPLES" \
		--seed "$SEED" \
		--generation-database none \
		--request-timeout 60 \
		--no-color \
		--report junit --report-junit-path "$REPORT_DIR/$who.xml" ||
		failed=1
done
if grep -n "Internal Server Error" "$REPORT_DIR/server.log" >/dev/null; then
	echo "the server logged errors: see $REPORT_DIR/server.log" >&2
fi
exit "$failed"
