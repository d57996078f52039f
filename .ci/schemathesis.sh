#!/usr/bin/env bash
# schemathesis against a live server, bounded in time: every answer must match /openapi.json
# (status codes, content types, headers, bodies) and no input may produce a 500.
#
#   .ci/schemathesis.sh <huddle binary> [seconds]     # default 150 s of generated requests
#
# The server gets a database of its own with real things to aim at (an admin's token, a platform
# API key, rooms, a message with a thread, a webhook, a provisioned user), so that requests get
# past "no such room" into the handlers. Three checks are left out, on purpose:
# - positive_data_acceptance: the document gives shapes and bounds, not every rule (a webhook URL
#   must be absolute and public, a body is trimmed before it is measured), so some schema-valid
#   requests are rightly refused with 400;
# - unsupported_method: the contract's closed set of status codes has no 405, and answers a method
#   a route does not have as any unknown route, 404 not_found;
# - ensure_resource_availability: the stateful phase follows links it infers (a room just made)
#   and fills the other ids from the fixed ones below (a message of another room), so a correct
#   404 is taken for a lost resource.
# logout is left out because it would end the session every other request authenticates with.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:?usage: .ci/schemathesis.sh <huddle binary> [seconds]}
SECONDS_BUDGET=${2:-150}
PORT=${SCHEMATHESIS_PORT:-3950}
PG=postgres://postgres@127.0.0.1:5432
DB=huddle_schemathesis_$$
WORK=$(mktemp -d)
BASE=http://127.0.0.1:$PORT

export DATABASE_URL=$PG/$DB HOST=127.0.0.1 PORT JWT_SECRET=schemathesis-secret-schemathesis-secret \
  AUTH_RATE=0 MESSAGE_RATE=0 ROOM_EVENT_RATE=0 ROOMS_PER_HOUR=0 WORKSPACE_SIGNUP=open \
  WEBHOOK_ALLOW_PRIVATE=true RUST_LOG=warn

server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  psql -q "$PG/postgres" -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v st >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi

echo 'schemathesis-password' | "$BIN" user create admin1 --admin >/dev/null 2>&1
KEY=$("$BIN" api-key create --platform --name schemathesis 2>/dev/null)
"$BIN" >"$WORK/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -sf "$BASE/readyz" >/dev/null && break; sleep 0.1; done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
post() { curl -sf "$BASE$1" -H "authorization: Bearer $2" -H 'content-type: application/json' -d "$3"; }
TOKEN=$(curl -sf "$BASE/api/auth/login" -H 'content-type: application/json' \
  -d '{"username": "admin1", "password": "schemathesis-password"}' | json "['access_token']")
OTHER=$(curl -sf "$BASE/api/auth/register" -H 'content-type: application/json' \
  -d '{"username": "other1", "password": "schemathesis-password"}' | json "['user']['id']")
ROOM=$(post /api/rooms "$TOKEN" '{"name": "fuzzed", "visibility": "private"}' | json "['id']")
DOOMED=$(post /api/rooms "$TOKEN" '{"name": "doomed", "visibility": "public"}' | json "['id']")
curl -sf -X PUT "$BASE/api/rooms/$ROOM/members/$OTHER" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"role": "member"}' >/dev/null
curl -sf -X PUT "$BASE/api/server/users/crm-1" -H "authorization: Bearer $KEY" \
  -H 'content-type: application/json' -d '{"username": "provisioned1"}' >/dev/null
curl -sf -X PUT "$BASE/api/server/rooms/$ROOM/members/crm-1" -H "authorization: Bearer $KEY" \
  -H 'content-type: application/json' -d '{"role": "member"}' >/dev/null
MESSAGE=$(post "/api/server/rooms/$ROOM/messages" "$KEY" '{"sender": "crm-1", "body": "root"}' | json "['id']")
post "/api/server/rooms/$ROOM/messages" "$KEY" \
  "{\"sender\": \"crm-1\", \"body\": \"reply\", \"thread_root_id\": \"$MESSAGE\"}" >/dev/null
SPARE_KEY=$(post /api/admin/api-keys "$TOKEN" '{"name": "spare"}' | json "['key']['id']")
WEBHOOK=$(post /api/server/webhooks "$KEY" '{"url": "http://127.0.0.1:9/hook"}' | json "['webhook']['id']")

cat >"$WORK/schemathesis.toml" <<EOF
[auth.openapi.user_token]
bearer = "$TOKEN"

[auth.openapi.api_key]
bearer = "$KEY"

[[operations]]
include-path-regex = "^/api/rooms/\\\\{id\\\\}"
exclude-operation-id = "delete_room"
parameters = { "path.id" = "$ROOM", "path.message_id" = "$MESSAGE", "path.root_id" = "$MESSAGE", "path.user_id" = "$OTHER" }

[[operations]]
include-operation-id = "delete_room"
parameters = { "path.id" = "$DOOMED" }

[[operations]]
include-path-regex = "^/api/server/rooms/\\\\{id\\\\}"
parameters = { "path.id" = "$ROOM", "path.external_id" = "crm-1" }

[[operations]]
include-path-regex = "^/api/server/users/"
parameters = { "path.external_id" = "crm-1" }

[[operations]]
include-path-regex = "^/api/server/webhooks/"
parameters = { "path.id" = "$WEBHOOK" }

[[operations]]
include-path-regex = "^/api/(admin/users|direct)/"
parameters = { "path.id" = "$OTHER", "path.user_id" = "$OTHER" }

[[operations]]
include-operation-id = "revoke_api_key"
parameters = { "path.id" = "$SPARE_KEY" }
EOF

status=0
(cd "$WORK" && st run "$BASE/openapi.json" \
  --max-time "$SECONDS_BUDGET" --workers 1 --seed 1 \
  --exclude-checks positive_data_acceptance,unsupported_method,ensure_resource_availability \
  --exclude-operation-id logout \
  --warnings off) || status=$?
if grep -q "internal error" "$WORK/server.log"; then
  echo "the server logged internal errors:" && grep -A3 "internal error" "$WORK/server.log" | head -40
  status=1
fi
exit $status
