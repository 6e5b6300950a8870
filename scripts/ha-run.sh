#!/bin/bash
# Check pia-mqtt's discovery through a real Home Assistant's eyes (maintainers' tool).
#
#   T=path/to/shared/tools/homeassistant      # the team's HA harness (setup.sh once)
#   $T/ha_check.sh --output ha.json --run scripts/ha-run.sh && jq -e '.mqtt_log == []' ha.json
#
# Run by ha_check.sh once HA and its broker are up (it exports MQTT_HOST/MQTT_PORT, HA_URL,
# HA_TOKEN, HA_PY, HA_HARNESS): starts `pia-mqtt demo` against that broker, then checks that
# every entity is available, the port sensor shows the port in the file, Refresh makes the
# daemon bind, New port changes the port, and discovery is re-sent after HA's birth message.
set -euo pipefail
work=$(mktemp -d)
python -m pia_mqtt demo --dir "$work/demo" --interval 30 > "$work/demo.log" 2>&1 & pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" || true; rm -rf "$work"' EXIT
ha() { local cmd=$1; shift; "$HA_PY" "$HA_HARNESS" "$cmd" --url "$HA_URL" --token-file "$HA_TOKEN_FILE" "$@"; }
state() { curl -s -H "Authorization: Bearer $HA_TOKEN" "$HA_URL/api/states/$1" | jq -r .state; }

ha dump --timeout 40 --require-state --output "$work/live.json" \
  sensor.pia_mqtt_forwarded_port sensor.pia_mqtt_status sensor.pia_mqtt_port_expires \
  sensor.pia_mqtt_last_refresh sensor.pia_mqtt_gateway button.pia_mqtt_refresh button.pia_mqtt_new_port
jq -r '.entities[] | "\(.entity_id) = \(.state)"' "$work/live.json" >&2
port_file=$(cat "$work/demo/pia-port.txt")
[ "$(state sensor.pia_mqtt_forwarded_port)" = "$port_file" ] || { echo "port sensor != port file ($port_file)" >&2; exit 1; }
[ "$(state sensor.pia_mqtt_status)" = active ] || { echo "status not active" >&2; exit 1; }

before=$(state sensor.pia_mqtt_last_refresh)
sleep 1.2  # last_refresh has 1 s resolution: make the new bind distinguishable
ha call button.press '{"entity_id": "button.pia_mqtt_refresh"}' > /dev/null
now=$before
for _ in $(seq 50); do
  now=$(state sensor.pia_mqtt_last_refresh)
  [ "$now" != "$before" ] && break
  sleep 0.2
done
[ "$now" != "$before" ] || { echo "pressing Refresh had no effect" >&2; tail -30 "$work/demo.log" >&2; exit 1; }
echo "refresh pressed: last_refresh $before -> $now" >&2

old_port=$(state sensor.pia_mqtt_forwarded_port)
ha call button.press '{"entity_id": "button.pia_mqtt_new_port"}' > /dev/null
new_port=$old_port
for _ in $(seq 50); do
  new_port=$(state sensor.pia_mqtt_forwarded_port)
  [ "$new_port" != "$old_port" ] && [ "$new_port" != unavailable ] && break
  sleep 0.2
done
[ "$new_port" != "$old_port" ] || { echo "pressing New port had no effect" >&2; exit 1; }
echo "new port pressed: $old_port -> $new_port (file: $(cat "$work/demo/pia-port.txt"))" >&2

for _ in $(seq 75); do grep -q "re-sent discovery" "$work/demo.log" && break; sleep 0.2; done
grep "re-sent discovery" "$work/demo.log" >&2 || { echo "no re-send after HA's birth message" >&2; exit 1; }
