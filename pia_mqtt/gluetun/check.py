"""``pia-mqtt check-config``'s gluetun section: one GET, never a change to gluetun.

Configuration checks never touch the network (DESIGN); this is the one exception the
gluetun issue asks for, and it runs only after the settings were validated: a single
``GET /v1/portforward`` says whether gluetun answers, whether the API key is accepted and
what gluetun forwards now. It never PUTs: whether this gluetun accepts our port is learnt
from the daemon's first PUT (its first log lines and the state's ``gluetun`` entry).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pia_mqtt.errors import GluetunError
from pia_mqtt.gluetun.client import (
    FOLLOW_FIX,
    PORTFORWARD,
    GluetunAuthError,
    GluetunClient,
    GluetunUnavailableError,
)
from pia_mqtt.redact import describe

if TYPE_CHECKING:
    from pia_mqtt.gluetun.client import ForwardedPorts

TITLE = "gluetun (one GET {url}{route}; nothing is changed):"


def gluetun_report(client: GluetunClient, *, follows: bool, has_key: bool) -> list[str]:
    """The lines check-config prints about gluetun, after one GET through ``client``."""
    lines = [TITLE.format(url=client.url, route=PORTFORWARD)]
    try:
        view = client.read(fallback=False)
    except GluetunUnavailableError as exc:
        return [*lines, "  answers: no", f"  {describe(exc)}"]
    except GluetunAuthError as exc:
        return [*lines, "  answers: yes", "  API key: refused", f"  {describe(exc)}"]
    except GluetunError as exc:
        return [*lines, "  answers: yes, but not like gluetun's control server", f"  {exc}"]
    key = (
        "accepted (GLUETUN_API_KEY)"
        if has_key
        else "none set; gluetun answered without one (a public role)"
    )
    return [
        *lines,
        f"  answers: yes (reply {view.shape})",
        f"  API key: {key}",
        f"  forwards now: {_forwarded(view)}",
        f"  {_mode(view, follows=follows)}",
    ]


def _forwarded(view: ForwardedPorts) -> str:
    if not view.started:
        return "nothing yet (its tunnel has not come up since gluetun started)"
    if not view.ports:
        return "nothing (port 0: its tunnel is starting or restarting, or it does not forward)"
    if len(view.ports) == 1:
        return f"port {view.ports[0]}"
    shown = ", ".join(str(port) for port in view.ports)
    return f"ports {shown} (pia-mqtt uses the first, {view.ports[0]})"


def _mode(view: ForwardedPorts, *, follows: bool) -> str:
    if follows:
        if view.ports:
            return f"PORT_SOURCE=gluetun: pia-mqtt will hand port {view.ports[0]} on."
        return (
            "PORT_SOURCE=gluetun: pia-mqtt waits for gluetun's port (gluetun needs "
            "VPN_PORT_FORWARDING=on)."
        )
    if view.ports:
        return (
            f"PORT_SOURCE=pia, but gluetun forwards port {view.ports[0]} itself: running "
            f"both makes two PIA ports; {FOLLOW_FIX}."
        )
    return (
        "PORT_SOURCE=pia: the daemon PUTs its port to gluetun; only a gluetun build with "
        "PUT /v1/portforward and VPN_SERVICE_PROVIDER=custom accepts it, and the daemon's "
        "first PUT says so in its first log lines."
    )
