#!/usr/bin/env bash
# Checks an install bundle: cross/check-bundle.sh BUNDLE.tar.gz HOST_SHMC_PLUGIN
#
# 1. layout: exactly the expected files, one top directory named like the
#    bundle, modes, checksums, a static binary for the bundle's CPU;
# 2. the init script passes `sh -n` (and `busybox sh -n` when busybox is there);
# 3. the example configuration is accepted by the host build (also with every
#    commented-out timing key switched on), and INSTALL has no placeholder left;
# 4. status/start/restart/stop of the init script, under sh and busybox sh,
#    driving the HOST build of shmc-plugin in a temporary root (SHMC_ROOT):
#    it starts, reports its pids, is respawned after being killed, refuses a
#    second start, restarts, stops with no process left, and a bad
#    configuration makes `start` fail with the plugin's message in the log.
set -euo pipefail

BUNDLE=$(readlink -f "$1")
HOST_BIN=$(readlink -f "$2")
[ -f "$BUNDLE" ] || { echo "no bundle $1"; exit 1; }
[ -x "$HOST_BIN" ] || { echo "no host binary $2"; exit 1; }

name=$(basename "$BUNDLE" .tar.gz)
target=${name#shmc-plugin-*-}
TMP=$(mktemp -d /tmp/shmc-bundle-check.XXXXXX)
INIT_UNDER_TEST=
cleanup() {
    # Stop whatever a failed check left running, then remove the temporary root.
    if [ -n "$INIT_UNDER_TEST" ]; then
        SHMC_ROOT=$TMP/root SHMC_STOP_TIMEOUT=2 sh "$INIT_UNDER_TEST" stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "bundle check FAILED ($name): $*" >&2; exit 1; }
pass() { echo "ok   bundle $name: $*"; }

# 1. layout
expected="$name/
$name/INSTALL
$name/SHA256SUMS
$name/etc/
$name/etc/init.d/
$name/etc/init.d/shmc-plugin
$name/etc/shelfha/
$name/etc/shelfha/shmc-plugin.toml.example
$name/usr/
$name/usr/sbin/
$name/usr/sbin/shmc-plugin"
actual=$(tar -tzf "$BUNDLE" | sort)
[ "$actual" = "$(echo "$expected" | sort)" ] ||
    fail "layout differs:$(diff <(echo "$expected" | sort) <(echo "$actual") || true)"
tar -xzf "$BUNDLE" -C "$TMP"
B=$TMP/$name
[ -x "$B/usr/sbin/shmc-plugin" ] && [ -x "$B/etc/init.d/shmc-plugin" ] || fail "binary or init script not executable"
[ "$(stat -c %a "$B/etc/shelfha/shmc-plugin.toml.example")" = 644 ] || fail "example config mode"
(cd "$B" && sha256sum -c --quiet SHA256SUMS) || fail "checksums"
desc=$(file -b "$B/usr/sbin/shmc-plugin")
case $desc in *"statically linked"*) ;; *) fail "binary not static: $desc" ;; esac
case $target in
    arm*) want=ARM ;; powerpc*) want=PowerPC ;; mips*) want=MIPS ;; *) want=x86-64 ;;
esac
case $desc in *"$want"*) ;; *) fail "binary is not for $want: $desc" ;; esac
pass "layout, modes, checksums, $want static binary"

# 2. syntax
INIT=$B/etc/init.d/shmc-plugin
SHELLS=(sh)
sh -n "$INIT" || fail "sh -n"
if command -v busybox >/dev/null; then
    busybox sh -n "$INIT" || fail "busybox sh -n"
    SHELLS+=("busybox sh")
fi
pass "init script syntax (${SHELLS[*]})"

# 3. example configuration and INSTALL text
ex=$B/etc/shelfha/shmc-plugin.toml.example
"$HOST_BIN" replay --config "$ex" /dev/null >"$TMP/ex.out" 2>&1 || fail "example config refused: $(cat "$TMP/ex.out")"
sed 's/^# \([a-z_]* = \)/\1/' "$ex" >"$TMP/all-keys.toml"
grep -q '^probe_interval_ms = ' "$TMP/all-keys.toml" || fail "example config documents no timing keys"
"$HOST_BIN" replay --config "$TMP/all-keys.toml" /dev/null >"$TMP/ex.out" 2>&1 ||
    fail "example config with its timing keys refused: $(cat "$TMP/ex.out")"
! grep -n '@[A-Z_]*@' "$B/INSTALL" || fail "INSTALL has placeholders left"
grep -q "/etc/shelfha/key" "$B/INSTALL" && grep -q 'key_file = "/etc/shelfha/key"' "$ex" || fail "key file location not documented"
pass "example configuration accepted by the host build; INSTALL complete"

# 4. lifecycle against the host build in a temporary root
R=$TMP/root
mkdir -p "$R/usr/sbin" "$R/etc/init.d" "$R/etc/shelfha" "$R/dev"
cp "$HOST_BIN" "$R/usr/sbin/shmc-plugin"
cp "$INIT" "$R/etc/init.d/shmc-plugin"
INIT_UNDER_TEST=$R/etc/init.d/shmc-plugin
mkfifo "$R/dev/ipmb-fifo"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$R/etc/shelfha/key" && chmod 600 "$R/etc/shelfha/key"
sed -e "s|^ipmb_device = .*|ipmb_device = \"$R/dev/ipmb-fifo\"|" -e 's|^ipmb_mode = .*|ipmb_mode = "stream"|' \
    -e "s|^key_file = .*|key_file = \"$R/etc/shelfha/key\"|" -e 's|^listen = .*||' \
    -e "s|^sequence_file = .*|sequence_file = \"$R/etc/shelfha/sequence\"|" \
    "$ex" >"$R/etc/shelfha/shmc-plugin.toml"
sed 's/^slot = 2$/slot = 2\nbogus_key = 1/' "$R/etc/shelfha/shmc-plugin.toml" >"$R/etc/shelfha/bad.toml"

run_init() { # SHELL ACTION: prints output, sets RC
    RC=0
    OUTPUT=$(env SHMC_ROOT="$R" SHMC_DEFAULTS=/nonexistent SHMC_RESPAWN_DELAY=1 SHMC_STOP_TIMEOUT=5 \
        ${CONFIG_OVERRIDE:+SHMC_CONFIG=$CONFIG_OVERRIDE} $1 "$INIT_UNDER_TEST" "$2" 2>&1) || RC=$?
}
pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
child_pid() { cat "$R/var/run/shmc-plugin.pid" 2>/dev/null || true; }
sup_pid() { cat "$R/var/run/shmc-plugin.supervisor.pid" 2>/dev/null || true; }
is_plugin() { [ "$(readlink "/proc/$1/exe" 2>/dev/null)" = "$R/usr/sbin/shmc-plugin" ]; }

for SH in "${SHELLS[@]}"; do
    CONFIG_OVERRIDE=
    run_init "$SH" status
    [ $RC = 3 ] || fail "[$SH] status before start: exit $RC, want 3: $OUTPUT"
    run_init "$SH" start
    [ $RC = 0 ] || fail "[$SH] start: exit $RC: $OUTPUT$(cat "$R/var/log/shmc-plugin.log" 2>/dev/null)"
    c1=$(child_pid) s1=$(sup_pid)
    pid_alive "$c1" && is_plugin "$c1" || fail "[$SH] no shmc-plugin process after start (pid '$c1')"
    pid_alive "$s1" || fail "[$SH] no supervisor after start"
    run_init "$SH" status
    [ $RC = 0 ] && [[ $OUTPUT == *"running (pid $c1, supervisor pid $s1)"* ]] || fail "[$SH] status: exit $RC: $OUTPUT"
    run_init "$SH" start
    [ $RC = 0 ] && [[ $OUTPUT == *"already running"* ]] || fail "[$SH] second start: exit $RC: $OUTPUT"
    [ "$(child_pid)" = "$c1" ] || fail "[$SH] second start replaced the plugin"
    # respawn: kill the plugin, a new one must follow
    kill -KILL "$c1"
    c2=
    for _ in $(seq 1 50); do
        c2=$(child_pid)
        if [ -n "$c2" ] && [ "$c2" != "$c1" ] && pid_alive "$c2"; then break; fi
        c2=
        sleep 0.2
    done
    [ -n "$c2" ] && is_plugin "$c2" || fail "[$SH] plugin not respawned after kill -9"
    pid_alive "$c1" && fail "[$SH] killed plugin still alive"
    grep -q "restarting in 1 s" "$R/var/log/shmc-plugin.log" || fail "[$SH] respawn not logged"
    run_init "$SH" restart
    [ $RC = 0 ] || fail "[$SH] restart: exit $RC: $OUTPUT"
    c3=$(child_pid) s3=$(sup_pid)
    [ "$s3" != "$s1" ] && pid_alive "$s3" && pid_alive "$c3" && is_plugin "$c3" || fail "[$SH] restart did not replace the processes"
    pid_alive "$s1" && fail "[$SH] old supervisor alive after restart"
    pid_alive "$c2" && fail "[$SH] old plugin alive after restart"
    run_init "$SH" stop
    [ $RC = 0 ] || fail "[$SH] stop: exit $RC: $OUTPUT"
    pid_alive "$c3" && fail "[$SH] plugin alive after stop"
    pid_alive "$s3" && fail "[$SH] supervisor alive after stop"
    [ ! -e "$R/var/run/shmc-plugin.pid" ] && [ ! -e "$R/var/run/shmc-plugin.supervisor.pid" ] || fail "[$SH] pid files left"
    run_init "$SH" status
    [ $RC = 3 ] || fail "[$SH] status after stop: exit $RC: $OUTPUT"
    run_init "$SH" stop
    [ $RC = 0 ] || fail "[$SH] stop when stopped: exit $RC"

    # a configuration the plugin refuses: start fails, the log names the line
    : >"$R/var/log/shmc-plugin.log"
    CONFIG_OVERRIDE=$R/etc/shelfha/bad.toml
    run_init "$SH" start
    [ $RC = 1 ] || fail "[$SH] start with a bad configuration: exit $RC, want 1: $OUTPUT"
    grep -q "bad.toml:[0-9]*:.*bogus_key" "$R/var/log/shmc-plugin.log" ||
        fail "[$SH] the plugin's configuration error is not in the log: $(cat "$R/var/log/shmc-plugin.log")"
    run_init "$SH" stop
    [ $RC = 0 ] || fail "[$SH] stop after failed start: exit $RC"
    run_init "$SH" status
    [ $RC = 3 ] || fail "[$SH] status after stop: exit $RC: $OUTPUT"
    run_init "$SH" bogus
    [ $RC = 2 ] || fail "[$SH] unknown action: exit $RC, want 2"
    pass "init script under $SH: status, start, respawn, restart, stop, bad configuration (host build)"
done
INIT_UNDER_TEST=
