# debian-mirror.sh: sourced by peers-root.sh and readme-check.sh (not run on its own).
# host_mirror prints the URI of this machine's own Debian archive, so a debootstrap root
# uses the registry exactly as apt is set up here; PIA_MQTT_DEBIAN_MIRROR overrides it.
# The caller defines die().
# shellcheck shell=bash

# The URI of the host's own Debian archive: the sources entry that carries the host's
# release (not -security/-updates), deb822 first, then the one-line format.
host_mirror() {
    if [ -n "${PIA_MQTT_DEBIAN_MIRROR:-}" ]; then echo "$PIA_MQTT_DEBIAN_MIRROR"; return; fi
    local codename uri
    # shellcheck disable=SC1091  # the host's own file
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || die "cannot read VERSION_CODENAME from /etc/os-release; set PIA_MQTT_DEBIAN_MIRROR"
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v want="$codename" '
        BEGIN { RS = ""; FS = "\n" }
        {
            uris = ""; suites = ""; deb = 0
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
                if ($i ~ /^Suites:/) { suites = " " $i " "; sub(/^Suites:/, "", suites) }
                if ($i ~ /^Types:.*(^|[ \t])deb([ \t]|$)/) deb = 1
            }
            if (deb && index(suites " ", " " want " ")) { split(uris, u, /[ \t]+/); print u[1]; exit }
        }')
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v want="$codename" '
            $1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == want) { print $i; exit }
            }')
    fi
    [ -n "$uri" ] || die "no Debian '$codename' entry in /etc/apt/sources.list{,.d}; set PIA_MQTT_DEBIAN_MIRROR"
    echo "${uri%/}"
}
