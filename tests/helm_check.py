"""Lint, package and render the Helm chart with helm-sdkpy (Helm's own Go library).

Runs under Python >= 3.12 (helm-sdkpy's floor), in its own virtualenv:

    python3.12 tests/helm_check.py chart/ OUT_DIR SCENARIOS_JSON

SCENARIOS_JSON maps a scenario name to the values to install with. Prints one JSON
document: the lint result, the packaged archive's path, and for every scenario the list of
Kubernetes objects Helm would apply, plus its NOTES.txt.

helm-sdkpy has no `helm template`. Rendering therefore runs a real `helm install`
(wait=False) against a minimal Kubernetes API stand-in on 127.0.0.1 that answers
discovery, reports every object as absent, and records what Helm creates. The recorded
objects are exactly what Helm would send to a cluster, after its own YAML parsing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _resource(name: str, kind: str, *, namespaced: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "singularName": "",
        "namespaced": namespaced,
        "kind": kind,
        "verbs": _VERBS,
    }


DISCOVERY: dict[str, dict[str, Any]] = {
    "/version": {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"},
    "/api": {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    },
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            },
            {
                # prometheus-operator's CRD, for the chart's optional ServiceMonitor.
                "name": "monitoring.coreos.com",
                "versions": [{"groupVersion": "monitoring.coreos.com/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "monitoring.coreos.com/v1", "version": "v1"},
            },
        ],
    },
    "/api/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": [
            _resource("configmaps", "ConfigMap"),
            _resource("secrets", "Secret"),
            _resource("persistentvolumeclaims", "PersistentVolumeClaim"),
            _resource("serviceaccounts", "ServiceAccount"),
            _resource("services", "Service"),
            _resource("namespaces", "Namespace", namespaced=False),
        ],
    },
    "/apis/apps/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "apps/v1",
        "resources": [_resource("deployments", "Deployment")],
    },
    "/apis/monitoring.coreos.com/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "monitoring.coreos.com/v1",
        "resources": [_resource("servicemonitors", "ServiceMonitor")],
    },
}


class FakeApiServer:
    """Just enough of the Kubernetes API for `helm install --wait=false` on an empty cluster."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _json(self, code: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in DISCOVERY:
                    self._json(200, DISCOVERY[path])
                elif "labelSelector=" in self.path:
                    # Helm's release storage lists its Secrets by label: none yet.
                    self._json(
                        200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}
                    )
                else:
                    self._json(
                        404,
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "reason": "NotFound",
                            "code": 404,
                        },
                    )

            def _echo(self) -> None:
                # Creating or updating echoes the object back, in the encoding it came in
                # (Helm stores its release record as protobuf, applies objects as JSON).
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                content_type = self.headers.get("Content-Type") or "application/json"
                if (
                    content_type.startswith("application/json")
                    and "sh.helm.release" not in self.path
                ):
                    outer.created.append(json.loads(body))
                self.send_response(201 if self.command == "POST" else 200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = _echo  # noqa: N815  (the names http.server dispatches to)
            do_PUT = _echo  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def kubeconfig(self) -> str:
        """A kubeconfig (YAML) pointing at this server."""
        port = self._server.server_address[1]
        return (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\n"
            "contexts:\n- name: fake\n  context: {cluster: fake, user: fake, namespace: media}\n"
            "current-context: fake\n"
            "users:\n- name: fake\n  user: {token: fake}\n"
        )


def main(argv: list[str]) -> int:
    """Lint, package and render; print the results as JSON."""
    chart, out_dir, scenarios_json = argv[1], Path(argv[2]), argv[3]
    scenarios: dict[str, dict[str, Any]] = json.loads(scenarios_json)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Helm keeps caches and its registry config under these; never touch the user's.
    home = tempfile.mkdtemp(prefix="helm-home-", dir=out_dir)
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        os.environ.setdefault(name, str(Path(home) / name.lower()))
    os.environ["HOME"] = home

    import helm_sdkpy

    result: dict[str, Any] = {"helm": helm_sdkpy.get_version()}
    offline = helm_sdkpy.Configuration(namespace="media")
    result["lint"] = asyncio.run(helm_sdkpy.Lint(offline).run(chart))
    result["package"] = asyncio.run(helm_sdkpy.Package(offline).run(chart, dest_dir=str(out_dir)))
    result["renders"] = {}
    for name, values in scenarios.items():
        with FakeApiServer() as api:
            config = helm_sdkpy.Configuration(namespace="media", kubeconfig=api.kubeconfig)
            release = asyncio.run(
                helm_sdkpy.Install(config).run("pia", chart, values=values, wait=False, timeout=60)
            )
            result["renders"][name] = {
                "objects": api.created,
                "notes": release.get("info", {}).get("notes", ""),
            }
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
