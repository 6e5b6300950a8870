"""The status page (``/``): one server-rendered HTML document, read at a glance.

No scripts, no external assets (fonts, styles, images): the page reloads itself with a
meta refresh, so it works behind any proxy and in a network that reaches nothing else.
Everything shown comes from the state document and redacted event messages: no secret is
ever on the page, and every value is HTML-escaped.
"""

from __future__ import annotations

from datetime import datetime

from pia_mqtt.core.model import Event, SinkHealth, Status, SyncState, iso, valid_port
from pia_mqtt.http.board import View
from pia_mqtt.redact import redact

REFRESH_SECONDS = 10
CONTENT_TYPE = "text/html; charset=utf-8"


_HTML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


def escape(text: str) -> str:
    """Redacted, then HTML-escaped: every value on the page goes through here.

    Not ``html.escape``: importing ``html`` loads its 2,000-entry entity table (0.4 MiB).
    """
    return redact(text).translate(_HTML)


_COLOURS = {
    Status.ACTIVE: "#1b7f3b",
    Status.ACQUIRING: "#9a6700",
    Status.STARTING: "#57606a",
    Status.ERROR: "#cf222e",
}
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:52rem;padding:0 1rem;
color:#1f2328;background:#fff}
h1{font-size:1.1rem;color:#57606a;font-weight:600;margin:0}
.port{font-size:6rem;font-weight:700;letter-spacing:.04em;margin:.2rem 0;
font-variant-numeric:tabular-nums}
.status{display:inline-block;color:#fff;border-radius:.4rem;padding:.2rem .7rem;
font-weight:600}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #d0d7de;
vertical-align:top}
th{color:#57606a;font-weight:600;width:12rem}
.bad{color:#cf222e}.good{color:#1b7f3b}
small{color:#57606a}
"""


_NO_SINKS = (
    "<tr><td><small>only the port files: no torrent client, gluetun or MQTT is "
    "configured</small></td></tr>"
)


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = int((now - moment).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 120:
        span = f"{seconds} s"
    elif seconds < 7200:
        span = f"{seconds // 60} min"
    elif seconds < 172800:
        span = f"{seconds // 3600} h"
    else:
        span = f"{seconds // 86400} days"
    return f"in {span}" if future else f"{span} ago"


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "&mdash;"
    return f"{escape(iso(moment) or '')} <small>({_ago(moment, now)})</small>"


def _row(label: str, value_html: str) -> str:
    return f"<tr><th>{escape(label)}</th><td>{value_html}</td></tr>"


def _sink_row(name: str, health: SinkHealth, now: datetime) -> str:
    ok = health.state is SyncState.IN_SYNC
    state = f'<span class="{"good" if ok else "bad"}">{escape(health.state.value)}</span>'
    port = f" on port {health.port}" if valid_port(health.port) else ""
    error = f"<br><small>{escape(health.error)}</small>" if health.error else ""
    synced = f"<br><small>last in sync {_ago(health.last_sync, now)}</small>"
    return _row(name, state + port + synced + error)


def _event_row(event: Event) -> str:
    return (
        f"<tr><td><small>{escape(iso(event.at) or '')}</small></td>"
        f"<td>{escape(event.kind.value)}</td><td>{escape(event.message)}</td></tr>"
    )


def render(view: View, *, now: datetime, version: str) -> str:
    """The whole page."""
    s = view.snapshot
    port = str(s.port) if valid_port(s.port) else "&mdash;"
    colour = _COLOURS[s.status]
    unknown = "not known yet" if s.source == "pia" else f"{s.source}'s own (PORT_SOURCE)"
    gateway = escape(s.gateway or unknown)
    if s.hostname:
        gateway += f" <small>({escape(s.hostname)})</small>"
    rows = [
        _row("Status since", _when(view.status_since, now)),
        _row("Gateway", gateway),
        _row("Port expires", _when(s.expires_at, now)),
        _row("Last bind", _when(s.last_refresh, now)),
        _row("Next refresh", _when(s.next_refresh, now)),
        _row("Source", escape(s.source)),
    ]
    if s.last_error:
        rows.append(_row("Last error", f'<span class="bad">{escape(s.last_error)}</span>'))
    sinks = "".join(_sink_row(n, h, now) for n, h in sorted(s.sinks.items()))
    events = "".join(_event_row(e) for e in view.events) or (
        '<tr><td colspan="3"><small>none yet</small></td></tr>'
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(port if valid_port(s.port) else '-')} · pia-mqtt</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>PIA forwarded port</h1>"
        f'<div class="port" id="port">{port}</div>'
        f'<span class="status" id="status" style="background:{colour}">'
        f"{escape(s.status.value)}</span>"
        f"<table>{''.join(rows)}</table>"
        f"<h2>Sinks</h2><table>{sinks or _NO_SINKS}</table>"
        f"<h2>Last events</h2><table>{events}</table>"
        f"<small>pia-mqtt {escape(version)} · {escape(iso(now) or '')} · reloads every "
        f'{REFRESH_SECONDS} s · <a href="/status">/status</a> · '
        '<a href="/metrics">/metrics</a></small>'
        "</body></html>\n"
    )
