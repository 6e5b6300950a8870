#!/usr/bin/env bash
# peers-root.sh: a Debian 13 (trixie + trixie-backports) root with the torrent clients that
# Debian 12 does not have (qbittorrent-nox 5.3, transmission-daemon 4.1, deluged/deluge-web
# 2.2), for the tests' real peers.
#
#   peers-root.sh create              build the root once (debootstrap, about a minute, then
#                                     the packages); a second run with the same package list
#                                     returns at once
#   peers-root.sh check               exit 0 if the root is complete, 1 (saying how) if not
#   peers-root.sh path                print the root's folder
#   peers-root.sh version PKG         print PKG's installed version inside the root
#   peers-root.sh run DIR... -- CMD [ARG...]
#                                     exec CMD inside the root with /proc, /dev, /tmp and
#                                     each DIR bound at the same path, in a private mount
#                                     namespace (unshare -m): nothing stays mounted on the
#                                     host, so deleting the root is always safe; CMD keeps
#                                     this PID (signals reach it)
#
# The root is PIA_MQTT_PEERS_ROOT, default ${PIA_MQTT_CACHE:-$HOME/.cache/pia-mqtt}/trixie-root
# (outside the clone: it is about 400 MB). Debian's mirror is taken from this machine's apt
# configuration (or PIA_MQTT_DEBIAN_MIRROR). The root shares the caller's network namespace:
# tests start it inside a namespace of their own (tests/fixtures/peersroot.py), so a peer
# never reaches anything but loopback. Needs root (debootstrap, unshare, chroot).
set -euo pipefail

CACHE=${PIA_MQTT_CACHE:-$HOME/.cache/pia-mqtt}
ROOT=${PIA_MQTT_PEERS_ROOT:-$CACHE/trixie-root}
PACKAGES="qbittorrent-nox transmission-daemon deluged deluge-web"
MARKER=$ROOT/.pia-mqtt-peers
SUITE=trixie

die() { echo "peers-root.sh: $*" >&2; exit 1; }

# host_mirror: the URI of the host's own Debian archive (scripts/debian-mirror.sh)
. "$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh"

complete() { [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$PACKAGES" ]; }

# inroot DIR... -- CMD: the body of `run` (also used while building)
inroot() {
    local dirs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do dirs+=("$1"); shift; done
    [ "${1:-}" = -- ] || { echo "peers-root.sh: run needs -- before the command" >&2; exit 2; }
    shift
    [ $# -gt 0 ] || { echo "peers-root.sh: run needs a command after --" >&2; exit 2; }
    local d
    for d in /proc /dev /tmp ${dirs[@]+"${dirs[@]}"}; do
        [ -d "$d" ] || die "run: $d is not a folder"
        mkdir -p "$ROOT$d"
    done
    # shellcheck disable=SC2016  # the inner script expands its own arguments
    exec unshare --mount --propagation private -- /bin/sh -c '
      r=$1; n=$2; shift 2
      for d in /proc /dev /tmp; do mount --rbind "$d" "$r$d" || exit 1; done
      while [ "$n" -gt 0 ]; do mount --bind "$1" "$r$1" || exit 1; shift; n=$((n - 1)); done
      exec chroot "$r" env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root \
        LANG=C.UTF-8 "$@"' \
      _ "$ROOT" "${#dirs[@]}" ${dirs[@]+"${dirs[@]}"} "$@"
}

create() {
    complete && return 0
    mkdir -p "$CACHE"
    exec 9>"$ROOT.lock"
    flock 9  # another create (a parallel CI step, a second helper) finishes first
    complete && return 0
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    local mirror
    mirror=$(host_mirror)
    if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
        echo "peers-root.sh: debootstrap $SUITE into $ROOT (about a minute)" >&2
        rm -rf "$ROOT.partial"
        debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOT.partial" \
            "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
        rm -rf "$ROOT"
        mv "$ROOT.partial" "$ROOT"
    fi
    cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $mirror $SUITE main
deb $mirror $SUITE-backports main
EOF
    # The host's registry may serve a snapshot whose Release files are past their date.
    echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99pia-mqtt"
    # Packages must not start their daemons inside the root.
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod 755 "$ROOT/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    echo "peers-root.sh: installing $PACKAGES" >&2
    (inroot -- /bin/sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends -t $SUITE-backports $PACKAGES \
        && apt-get clean") \
        >"$CACHE/apt.log" 2>&1 \
        || { tail -n 20 "$CACHE/apt.log" >&2; die "installing the peers failed (log: $CACHE/apt.log)"; }
    # Peers must not resolve names: without a resolver nothing in the root can look up a
    # tracker, a port-test service or Transmission's public-address service.
    : >"$ROOT/etc/resolv.conf"
    echo "$PACKAGES" >"$MARKER"
}

case "${1:-}" in
    create) create ;;
    check)
        complete || die "no complete peers root at $ROOT: build it with scripts/peers-root.sh create (needs debootstrap, about a minute)" ;;
    path) echo "$ROOT" ;;
    version)
        [ -n "${2:-}" ] || { echo "usage: peers-root.sh version PKG" >&2; exit 2; }
        complete || die "no complete peers root at $ROOT (scripts/peers-root.sh create)"
        # shellcheck disable=SC2016  # dpkg-query's own format field
        chroot "$ROOT" dpkg-query -W -f '${Version}\n' "$2" ;;
    run)
        shift
        complete || die "no complete peers root at $ROOT (scripts/peers-root.sh create)"
        inroot "$@" ;;
    *)
        echo "usage: peers-root.sh create | check | path | version PKG | run DIR... -- CMD [ARG...]" >&2
        exit 2 ;;
esac
