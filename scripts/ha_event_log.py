# ruff: noqa: INP001, ASYNC240 - a maintainers' script run with HA's Python, not a package
"""Record every time a Home Assistant event entity fires (run with HA's Python: aiohttp).

    "$HA_PY" scripts/ha_event_log.py URL TOKEN_FILE ENTITY_ID OUT_FILE

Subscribes to ``state_changed`` over HA's websocket API and appends one line per new state
of ENTITY_ID (its ``event_type``) to OUT_FILE until SIGTERM. ha-run-forwarding.sh uses it
to check that one real event fires the entity exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp


async def main(url: str, token: str, entity_id: str, out: Path) -> None:
    """Log the entity's event types until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    ws_url = url.replace("http://", "ws://") + "/api/websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        await ws.receive_json()  # auth_required
        await ws.send_json({"type": "auth", "access_token": token})
        if (await ws.receive_json()).get("type") != "auth_ok":
            raise SystemExit("websocket auth failed")
        await ws.send_json({"id": 1, "type": "subscribe_events", "event_type": "state_changed"})
        if not (await ws.receive_json()).get("success"):
            raise SystemExit("subscribe_events refused")
        out.write_text("")  # subscribed: the caller may act now
        while not stop.is_set():
            try:
                msg = await asyncio.wait_for(ws.receive_json(), timeout=0.2)
            except TimeoutError:
                continue
            data = msg.get("event", {}).get("data", {})
            new = data.get("new_state") or {}
            if data.get("entity_id") == entity_id and new.get("state") not in (None, "unavailable"):
                with out.open("a") as log:
                    log.write(f"{new['attributes'].get('event_type')}\n")


if __name__ == "__main__":
    url, token_file, entity, out_file = sys.argv[1:5]
    asyncio.run(main(url, Path(token_file).read_text().strip(), entity, Path(out_file)))
