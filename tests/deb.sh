#!/usr/bin/env bash
# Builds the blade-agent .deb, installs it with dpkg into this (throwaway CI) machine, checks
# what it installed, then purges it and checks that nothing is left. Root only.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

fail() { echo "deb.sh: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "must run as root (dpkg -i)"
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked

version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "blade-agent"))')
deb=$(cargo deb -p blade-agent 2>/dev/null | tail -n 1)
[ -f "$deb" ] || fail "cargo deb did not produce a package ($deb)"
echo "deb.sh: built $deb"

if dpkg -s blade-agent >/dev/null 2>&1; then
    fail "blade-agent is already installed on this machine; refusing to replace it"
fi
trap 'dpkg --purge blade-agent >/dev/null 2>&1 || true' EXIT
dpkg -i "$deb"

out=$(/usr/bin/blade-agent --version)
[ "$out" = "blade-agent $version" ] || fail "--version printed '$out', expected 'blade-agent $version'"
/usr/bin/blade-agent --help | grep -q "blade-agent run" || fail "--help lacks the run command"

unit=/usr/lib/systemd/system/blade-agent.service
[ -f "$unit" ] || unit=/lib/systemd/system/blade-agent.service
[ -f "$unit" ] || fail "systemd unit not installed"
grep -qx 'ExecStart=/usr/bin/blade-agent run --config /etc/blade-agent/agent.toml' "$unit" || fail "unit ExecStart"
grep -qx 'Restart=on-failure' "$unit" || fail "unit lacks Restart=on-failure"
grep -qx 'StateDirectory=blade-agent' "$unit" || fail "unit lacks StateDirectory"
grep -qx 'WantedBy=multi-user.target' "$unit" || fail "unit lacks [Install] WantedBy"

[ -f /etc/blade-agent/agent.toml ] || fail "default config not installed"
dpkg-query -W -f='${Conffiles}\n' blade-agent | grep -q '/etc/blade-agent/agent.toml' ||
    fail "/etc/blade-agent/agent.toml is not a conffile"
/usr/bin/blade-agent check-config --config /etc/blade-agent/agent.toml >/dev/null ||
    fail "the shipped default config does not validate"
[ -d /var/lib/blade-agent ] || fail "state directory /var/lib/blade-agent missing"
[ "$(stat -c %a /var/lib/blade-agent)" = 700 ] || fail "state directory is not 0700"

dpkg --purge blade-agent
trap - EXIT
for p in /usr/bin/blade-agent "$unit" /etc/blade-agent/agent.toml /var/lib/blade-agent; do
    [ ! -e "$p" ] || fail "$p left after purge"
done
echo "deb.sh: OK (blade-agent $version installed, checked and purged)"
