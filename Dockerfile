# syntax=docker/dockerfile:1
# pia-mqtt container image: build the wheel in one stage, install it into a clean Alpine
# Python runtime in the next. No compiler, no pip cache and no build tools reach the
# runtime image; every dependency installs from a prebuilt musllinux wheel.
#
#   docker build -t ghcr.io/pia-mqtt/pia-mqtt:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .

# One pinned base for both stages, so the wheel is built by the interpreter that runs it.
ARG PYTHON_IMAGE=python:3.13.14-alpine3.24

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# hatchling reads README.md for the package metadata, so it is part of the build input.
COPY pyproject.toml README.md ./
COPY pia_mqtt/ pia_mqtt/
# --no-deps: only our own wheel is built here; the runtime stage resolves the
# dependencies from PyPI's prebuilt wheels. The build backend (hatchling) is pinned by
# pyproject.toml's [build-system] table.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="pia-mqtt" \
      org.opencontainers.image.description="Keeps a Private Internet Access forwarded port alive from inside an existing tunnel and hands it to files, qBittorrent, a hook, gluetun and MQTT/Home Assistant." \
      org.opencontainers.image.source="https://github.com/pia-mqtt/pia-mqtt" \
      org.opencontainers.image.url="https://github.com/pia-mqtt/pia-mqtt" \
      org.opencontainers.image.documentation="https://github.com/pia-mqtt/pia-mqtt/blob/main/docs/deployment.md" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# PYTHONDONTWRITEBYTECODE: the root filesystem may be read-only; the .pyc files are
# compiled once at install time below instead.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The wheel comes in through a bind mount, so it never becomes a layer of the image.
# The same pip flags are used by tests/test_packaging.py to install into a virtualenv.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/pia_mqtt-*.whl \
    && addgroup -S -g 1000 pia \
    && adduser -S -D -H -u 1000 -G pia -h /config -s /sbin/nologin pia \
    && mkdir -p /config \
    && chown 1000:1000 /config

# Everything the daemon writes (PORT_FILE, PORT_DATA_FILE, STATE_FILE) lives here.
VOLUME ["/config"]
WORKDIR /config
# Numeric IDs, so Kubernetes' runAsNonRoot can verify the user without /etc/passwd.
USER 1000:1000

# The daemon stops within 2 s on SIGTERM and marks itself offline on MQTT first.
STOPSIGNAL SIGTERM
# Exit 0 only after a successful bindPort within two refresh intervals; the start
# period covers the first token + getSignature + bindPort round trip.
HEALTHCHECK --interval=60s --timeout=10s --start-period=120s --retries=3 \
    CMD ["pia-mqtt", "healthcheck"]

ENTRYPOINT ["pia-mqtt"]
CMD ["run"]
