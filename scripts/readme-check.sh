#!/usr/bin/env bash
# readme-check.sh: run the README's two shell blocks, exactly as written, as root on a fresh
# minimal Debian 12 (what `debootstrap --variant=minbase` gives: no python3, pip,
# ca-certificates, iproute2 or sudo), and report how long each took.
#
#   readme-check.sh demo    the block with `pia-mqtt demo`: installs, then the demo runs for
#                           DEMO_SECONDS (20) and is stopped with SIGINT (Ctrl-C); then the
#                           demo line alone runs again in a network namespace with nothing
#                           but loopback, to show it needs no network
#   readme-check.sh test    the block with `pytest`
#   readme-check.sh all     both, each in its own fresh copy of the root
#
# The pristine root is built once and cached: ${PIA_MQTT_CACHE:-$HOME/.cache/pia-mqtt}/
# bookworm-minbase (about 200 MB, a minute); every run copies it to bookworm-run.XXXXXX/ and
# copies this checkout (tracked files as they are in the work tree) to /root/pia-mqtt in it.
# The block runs there with `unshare -m` + `chroot` (the root bound onto itself, /proc, /dev
# and /sys bound, /tmp and /run fresh tmpfs, in a private mount namespace so nothing stays
# mounted on the host). It shares the host's network, for
# apt and pip only (the tests themselves use loopback and namespaces they make).
# Debian's mirror is read from this machine's apt configuration (or PIA_MQTT_DEBIAN_MIRROR).
# Where this machine reaches the registries through a proxy with its own CA, that CA
# (/usr/local/share/ca-certificates) and PIP_CERT are handed to the root, as the machine's
# own configuration would be; nothing else is pre-installed. Needs root and debootstrap.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${PIA_MQTT_CACHE:-$HOME/.cache/pia-mqtt}
BASE=$CACHE/bookworm-minbase
# Each run gets a copy of its own (two runs at once must not share one), removed at exit
# unless KEEP_ROOT=1; _inroot (the setsid re-exec) finds it in READMECHECK_RUN.
RUN=${READMECHECK_RUN:-}
MADE=()
cleanup() { [ "${KEEP_ROOT:-}" = 1 ] || for d in ${MADE[@]+"${MADE[@]}"}; do rm -rf "$d"; done; }
SUITE=bookworm
DEMO_SECONDS=${DEMO_SECONDS:-20}

die() { echo "readme-check.sh: $*" >&2; exit 1; }
say() { echo "readme-check.sh: $*" >&2; }

# host_mirror: the URI of the host's own Debian archive (scripts/debian-mirror.sh)
. "$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh"

base() {
    [ -x "$BASE/usr/bin/apt-get" ] && return 0
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    mkdir -p "$CACHE"
    local mirror
    mirror=$(host_mirror)
    say "debootstrap --variant=minbase $SUITE into $BASE (about a minute)"
    rm -rf "$BASE.partial"
    debootstrap --variant=minbase "$SUITE" "$BASE.partial" "$mirror" \
        >"$CACHE/bookworm-debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE/bookworm-debootstrap.log" >&2; die "debootstrap failed"; }
    mv "$BASE.partial" "$BASE"
}

# A fresh copy of the pristine root with this checkout in /root/pia-mqtt.
fresh_root() {
    RUN=$(mktemp -d "$CACHE/bookworm-run.XXXXXX")
    MADE+=("$RUN")
    export READMECHECK_RUN=$RUN
    chmod 755 "$RUN"  # it is /: mktemp's 0700 would lock uid 1000 (the fault tests) out
    cp -a "$BASE/." "$RUN/"
    # What a fresh machine brings along that a chroot does not: a resolver, the machine's
    # own apt settings (a snapshot mirror's Release files may be past their date), and
    # no daemons started by package scripts (mosquitto's system broker on 1883).
    cp /etc/resolv.conf "$RUN/etc/resolv.conf"
    echo 'Acquire::Check-Valid-Until "false";' >"$RUN/etc/apt/apt.conf.d/99readme-check"
    printf '#!/bin/sh\nexit 101\n' >"$RUN/usr/sbin/policy-rc.d"
    chmod 755 "$RUN/usr/sbin/policy-rc.d"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        mkdir -p "$RUN/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$RUN/usr/local/share/ca-certificates/"
    fi
    mkdir -p "$RUN/root/pia-mqtt"
    (cd "$HERE" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -I{} sh -c '[ -e "$1" ] && printf "%s\0" "$1" || true' _ {} \
        | tar --null -T - -cf -) | tar -xf - -C "$RUN/root/pia-mqtt"
}

# The fenced ```bash block of README.md that contains $1.
block() {
    awk -v want="$1" '
        /^```bash$/ { inside = 1; text = ""; next }
        inside && /^```$/ { inside = 0; if (index(text, want)) { printf "%s", text; exit } next }
        inside { text = text $0 "\n" }
    ' "$HERE/README.md"
}

# inroot [--no-network] CMD...: run CMD in the root, in /root/pia-mqtt, as a login would.
inroot() {
    local netns=() no_net=''
    if [ "${1:-}" = --no-network ]; then netns=(--net); no_net=1; shift; fi
    local pip_cert=()
    [ -n "${PIP_CERT:-}" ] && pip_cert=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
    unshare --mount --propagation private ${netns[@]+"${netns[@]}"} -- /bin/sh -c '
        r=$1; no_net=$2; shift 2
        if [ -n "$no_net" ]; then ip link set lo up || exit 1; fi
        # The root must be a mount point of its own, as on a machine (the tests make
        # mounts private and rslave; that fails on a plain folder).
        mount --bind "$r" "$r" || exit 1
        mount --rbind /proc "$r/proc" && mount --rbind /dev "$r/dev" || exit 1
        mount --rbind /sys "$r/sys" || exit 1
        for d in tmp run; do mkdir -p "$r/$d" && mount -t tmpfs tmpfs "$r/$d" || exit 1; done
        exec chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive "$@"' \
        _ "$RUN" "$no_net" ${pip_cert[@]+"${pip_cert[@]}"} "$@"
}

run_demo() {
    local text demo_line start rc
    text=$(block 'pia-mqtt demo')
    [ -n "$text" ] || die "README.md has no bash block with pia-mqtt demo"
    fresh_root
    say "demo block, as written (stopped with SIGINT after $DEMO_SECONDS s of demo):"
    printf '%s\n' "$text" | sed 's/^/    /' >&2
    start=$SECONDS
    # The block's last line runs the demo until Ctrl-C: timeout sends SIGINT to the whole
    # block once the installs are done and the demo has run DEMO_SECONDS.
    printf '%s\n' "$text" >"$RUN/root/readme-demo.sh"
    set +e
    # Its own session and process group, so that SIGINT reaches the group like a Ctrl-C.
    setsid "$0" _inroot /bin/bash -c 'cd /root/pia-mqtt && exec bash -e /root/readme-demo.sh' \
        >"$CACHE/readme-demo.$$.log" 2>&1 &
    local pid=$!
    # Wait until the demo announced itself, then give it DEMO_SECONDS.
    local waited=0
    until grep -q 'pia-mqtt demo:' "$CACHE/readme-demo.$$.log" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1; waited=$((waited + 1))
        [ "$waited" -lt 900 ] || break
    done
    local installed=$((SECONDS - start))
    sleep "$DEMO_SECONDS"
    kill -INT -- "-$pid" 2>/dev/null
    wait "$pid"; rc=$?
    set -e
    tail -n 25 "$CACHE/readme-demo.$$.log" >&2
    [ -s "$RUN/root/pia-mqtt/demo-config/pia-port.txt" ] || die "the demo wrote no port file (log: $CACHE/readme-demo.$$.log)"
    say "demo block: installs + start $installed s, exit status $rc, port $(cat "$RUN/root/pia-mqtt/demo-config/pia-port.txt")"
    [ "$rc" = 0 ] || die "the demo block failed (exit $rc; log: $CACHE/readme-demo.$$.log)"

    demo_line=$(printf '%s\n' "$text" | grep 'pia-mqtt demo' | tail -n 1)
    say "again without network (loopback only): $demo_line --duration 8"
    rm -rf "$RUN/root/pia-mqtt/demo-config"
    inroot --no-network /bin/bash -c "cd /root/pia-mqtt && $demo_line --duration 8" \
        >"$CACHE/readme-demo-offline.$$.log" 2>&1 || { tail -n 20 "$CACHE/readme-demo-offline.$$.log" >&2; die "the offline demo failed"; }
    [ -s "$RUN/root/pia-mqtt/demo-config/pia-port.txt" ] || die "the offline demo wrote no port file"
    say "offline demo: OK, port $(cat "$RUN/root/pia-mqtt/demo-config/pia-port.txt")"
}

run_test() {
    local text start rc
    text=$(block 'pytest')
    [ -n "$text" ] || die "README.md has no bash block with pytest"
    fresh_root
    say "test block, as written:"
    printf '%s\n' "$text" | sed 's/^/    /' >&2
    printf '%s\n' "$text" >"$RUN/root/readme-test.sh"
    start=$SECONDS
    set +e
    inroot /bin/bash -c 'cd /root/pia-mqtt && exec bash -e /root/readme-test.sh' \
        >"$CACHE/readme-test.$$.log" 2>&1
    rc=$?
    set -e
    tail -n 40 "$CACHE/readme-test.$$.log" >&2
    say "test block: $((SECONDS - start)) s, exit status $rc (log: $CACHE/readme-test.$$.log)"
    [ "$rc" = 0 ] || die "the test block failed"
}

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, unshare, chroot)"
[ "${1:-}" = _inroot ] || trap cleanup EXIT
case "${1:-}" in
    _inroot) shift; RUN=$RUN inroot "$@" ;;  # used by run_demo through setsid
    demo) base; run_demo ;;
    test) base; run_test ;;
    all) base; run_demo; run_test ;;
    *) echo "usage: readme-check.sh demo | test | all" >&2; exit 2 ;;
esac
