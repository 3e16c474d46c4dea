#!/usr/bin/env bash
# Installs a smsrelay .deb on this machine, checks what a user would check, removes it, purges
# it, and checks that nothing is left: scripts/deb-roundtrip.sh target/debian/smsrelay_*_amd64.deb
# Needs root (dpkg). It leaves the machine as it found it, except for the smsrelay system
# user, which Debian packages keep on purge.
set -euo pipefail

deb=${1:?usage: scripts/deb-roundtrip.sh PATH.deb}
[ -f "$deb" ] || { echo "error: $deb not found" >&2; exit 2; }
if dpkg -s smsrelay >/dev/null 2>&1; then
    echo "error: smsrelay is already installed here; this check needs a machine without it" >&2
    exit 2
fi

failures=0
output=$(mktemp)
trap 'rm -f "$output"' EXIT
check() {
    local what=$1
    shift
    if "$@" >"$output" 2>&1; then
        echo "  ok    $what"
    else
        echo "  FAIL  $what"
        sed 's/^/        /' "$output"
        failures=$((failures + 1))
    fi
}
absent() { [ ! -e "$1" ]; }
mode_is() { [ "$(stat -c '%U:%G %a' "$2")" = "$1" ]; }

echo "==> dpkg -i $deb"
dpkg -i "$deb"
check "the binary runs: $(smsrelay --version)" smsrelay --version
check "system user smsrelay exists" getent passwd smsrelay
check "smsrelay is in group dialout" sh -c 'id -nG smsrelay | grep -qw dialout'
check "the config is a conffile" sh -c 'dpkg-query -W -f="\${Conffiles}" smsrelay | grep -q /etc/smsrelay/smsrelay.toml'
check "the config is root:smsrelay 640" mode_is "root:smsrelay 640" /etc/smsrelay/smsrelay.toml
check "smsrelay check-config accepts the shipped config" smsrelay check-config
check "the daemon's user can read the config" runuser -u smsrelay -- smsrelay check-config /etc/smsrelay/smsrelay.toml
check "the unit is installed" test -f /usr/lib/systemd/system/smsrelay.service
if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verify accepts the installed unit" \
        sh -c 'out=$(systemd-analyze verify /usr/lib/systemd/system/smsrelay.service 2>&1); echo "$out"; [ -z "$out" ]'
fi

echo "==> dpkg -i again (an upgrade in place)"
dpkg -i "$deb"
check "owner and mode survive the upgrade" mode_is "root:smsrelay 640" /etc/smsrelay/smsrelay.toml
echo "==> chmod 600 the config, then dpkg -i again"
chmod 0600 /etc/smsrelay/smsrelay.toml
dpkg -i "$deb"
check "the admin's mode survives the upgrade" mode_is "root:smsrelay 600" /etc/smsrelay/smsrelay.toml

echo "==> dpkg -r smsrelay"
dpkg -r smsrelay
check "the binary is gone" absent /usr/bin/smsrelay
check "the unit is gone" absent /usr/lib/systemd/system/smsrelay.service
check "the config stays until purge" test -f /etc/smsrelay/smsrelay.toml

# What systemd's StateDirectory= would have made on a first start.
install -d -o smsrelay -g smsrelay -m 0750 /var/lib/smsrelay
touch /var/lib/smsrelay/api-token

echo "==> dpkg -P smsrelay"
dpkg -P smsrelay
check "the config is gone" absent /etc/smsrelay
check "the state directory is gone" absent /var/lib/smsrelay
check "dpkg forgot the package" sh -c '! dpkg -s smsrelay'
check "no stat override is left" sh -c '! dpkg-statoverride --list /etc/smsrelay/smsrelay.toml'
check "no docs are left" absent /usr/share/doc/smsrelay

echo
if [ "$failures" -eq 0 ]; then
    echo "PASS: install, check-config, upgrade, remove and purge of $deb"
else
    echo "FAIL: $failures check(s) failed for $deb"
    exit 1
fi
