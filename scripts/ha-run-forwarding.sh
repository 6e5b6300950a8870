#!/bin/bash
# Check the "Port forwarding" binary sensor and the "Port events" event entity in a real
# Home Assistant (maintainers' tool, like ha-run.sh):
#
#   T=path/to/shared/tools/homeassistant
#   $T/ha_check.sh --ha 2026.2 --output ha.json --run scripts/ha-run-forwarding.sh \
#     && jq -e '.mqtt_log == []' ha.json
#
# Starts the PIA simulator as its own process and `pia-mqtt run` against it and HA's broker
# (keep-alive every 3 s), then checks: both entities exist; forwarding is on; pressing New
# port fires the event entity exactly once, with port_changed (counted over HA's websocket
# by ha_event_log.py); stopping the simulator (the gateway goes silent) turns forwarding
# off and fires an error event. Prints what it saw on stderr.
set -euo pipefail
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
ha() { local cmd=$1; shift; "$HA_PY" "$HA_HARNESS" "$cmd" --url "$HA_URL" --token-file "$HA_TOKEN_FILE" "$@"; }
get() { curl -s -H "Authorization: Bearer $HA_TOKEN" "$HA_URL/api/states/$1"; }
state() { get "$1" | jq -r .state; }
wait_for() {  # wait_for DESCRIPTION COMMAND...: poll up to 15 s
  local what=$1; shift
  for _ in $(seq 75); do "$@" && return 0; sleep 0.2; done
  echo "timed out waiting for: $what" >&2; tail -20 "$work/daemon.log" >&2; exit 1
}

gw_port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python -m pia_mqtt.simulator --dir "$work/sim" --gateway "127.0.0.1:$gw_port:ha-gateway" \
  --users p1234567:sim-password > "$work/sim.json" 2> "$work/sim.log" & sim=$!
pids+=("$sim")
wait_for "simulator ready" test -s "$work/sim.json"
PIA_USER=p1234567 PIA_PASS=sim-password PIA_TOKEN_URL=$(jq -r .token_url "$work/sim.json") \
  PIA_CA_CERT=$(jq -r .ca_file "$work/sim.json") REQUESTS_CA_BUNDLE=$(jq -r .token_ca_file "$work/sim.json") \
  PIA_GATEWAY=127.0.0.1 PIA_GATEWAY_PORT=$gw_port PORT_FORWARD_REFRESH_INTERVAL=3 \
  PORT_FILE=$work/port.txt PORT_DATA_FILE=$work/data.json STATE_FILE=$work/lease.json \
  python -m pia_mqtt run > "$work/daemon.log" 2>&1 & daemon=$!
pids=("$daemon" "${pids[@]}")

ha dump --timeout 40 --require-state --output "$work/live.json" \
  pia_mqtt_forwarding pia_mqtt_events sensor.pia_mqtt_forwarded_port button.pia_mqtt_new_port
fwd=$(jq -r '.expected.pia_mqtt_forwarding' "$work/live.json")
evt=$(jq -r '.expected.pia_mqtt_events' "$work/live.json")
echo "entities: $fwd, $evt" >&2
jq -c '.entities[] | select(.unique_id == "pia_mqtt_forwarding" or .unique_id == "pia_mqtt_events")
  | {entity_id, state, attributes}' "$work/live.json" >&2

is() { [ "$(state "$1")" = "$2" ]; }
wait_for "$fwd on" is "$fwd" on
echo "forwarding: on while bound (port $(cat "$work/port.txt"))" >&2

event_type() { get "$evt" | jq -r '.attributes.event_type'; }
# Every time the event entity fires, as HA's websocket reports it.
# (Copied to /tmp: HA 2026.2's Python runs in a Debian 13 root that sees /tmp, not this tree.)
cp "$(dirname "$0")/ha_event_log.py" "$work/"
"$HA_PY" "$work/ha_event_log.py" "$HA_URL" "$HA_TOKEN_FILE" "$evt" "$work/fired.txt" & logger=$!
pids=("$logger" "${pids[@]}")
wait_for "the event logger" test -e "$work/fired.txt"
old_port=$(cat "$work/port.txt")
before=$(state "$evt")
ha call button.press '{"entity_id": "button.pia_mqtt_new_port"}' > /dev/null
changed() { [ "$(event_type)" = port_changed ] && [ "$(state "$evt")" != "$before" ]; }
wait_for "a port_changed event" changed
sleep 3  # a keep-alive (every 3 s) must not fire it again
fired=$(paste -sd, "$work/fired.txt")
echo "new port pressed: $old_port -> $(cat "$work/port.txt"); fired: [$fired]; event: $(get "$evt" | jq -c '{state, attributes}')" >&2
[ "$fired" = port_changed ] || { echo "expected exactly one port_changed, got [$fired]" >&2; exit 1; }

kill -TERM "$sim"; wait "$sim" || true
wait_for "$fwd off after the gateway stopped answering" is "$fwd" off
failed() { case "$(event_type)" in error|bind_failed|lost) return 0;; *) return 1;; esac; }
wait_for "an error event" failed
echo "simulator stopped: forwarding $(state "$fwd"); event: $(get "$evt" | jq -c '{state, attributes}')" >&2
