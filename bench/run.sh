#!/usr/bin/env bash
# The shelfha benchmark: `bench/run.sh` (full, about 15 minutes as root on Debian 12)
# or `bench/run.sh --smoke` (CI: debug build, small capture, no cross targets and no
# libvirtd blades; checks that every stage runs, its numbers mean nothing).
#
# Prints one table and writes it with the machine description as JSON to
# bench/results/<UTC date>.json (smoke: target/bench/smoke.json). See BENCHMARKS.md.
#
# Environment:
#   BENCH_CROSS=0       do not build missing cross targets (use what target/cross/dist holds)
#   BENCH_E2E=0         skip the real-libvirtd end-to-end failover runs
#   BENCH_E2E_REPS=N    runs of each end-to-end scenario (default 3)
#   BENCH_E2E_GUESTS=L  guests on the failed blade, comma-separated (default 1,4,16)
#   BENCH_PEER=0        skip the Pacemaker peer (bench/peer/pacemaker.sh; installed here if missing)
#   BENCH_PEER_TRIALS=N trials per Pacemaker profile (default 3)
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."
ROOT=$PWD
SMOKE=
[ "${1:-}" = --smoke ] && SMOKE=1
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }

command -v python3 >/dev/null || { apt-get -o DPkg::Lock::Timeout=900 update &&
    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends python3; }
# The full run uses the system tests' packages (libvirtd, QEMU, ipmi_sim, ...) and tools:
# tests/ci.sh installs what is missing. Beyond those: qemu-user for the emulated targets.
[ -n "$SMOKE" ] || bash tests/ci.sh install
if [ -z "$SMOKE" ] && ! command -v qemu-arm-static >/dev/null; then
    log "installing qemu-user-static"
    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends qemu-user-static || {
        apt-get -o DPkg::Lock::Timeout=900 update
        apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends qemu-user-static
    }
fi

# The peer (full run only, BENCH_PEER=0 skips it): Pacemaker + Corosync + VirtualDomain +
# fence_ipmilan. Package scripts may not start the daemons: a temporary policy-rc.d denies
# every start.
if [ -z "$SMOKE" ] && [ "${BENCH_PEER:-1}" != 0 ] &&
   { ! command -v pacemakerd >/dev/null || ! command -v fence_ipmilan >/dev/null; }; then
    log "installing pacemaker corosync resource-agents fence-agents"
    own_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    rc=0
    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends pacemaker corosync \
        resource-agents pacemaker-cli-utils fence-agents || rc=$?
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || log "pacemaker not installed (exit $rc): the peer will be skipped"
fi

PROFILE_ARGS=(--release)
PROFILE_DIR=release
if [ -n "$SMOKE" ]; then PROFILE_ARGS=(); PROFILE_DIR=debug; fi
log "building shmc-plugin, shelfha, blade-agent (${PROFILE_DIR})"
cargo build "${PROFILE_ARGS[@]}" -p shmc-plugin -p shelfha -p blade-agent --bins

# c. heap allocations in the steady-state event path: the test asserts zero.
log "allocation-count test"
if cargo test "${PROFILE_ARGS[@]}" -p shmc-plugin --test alloc_count; then
    export BENCH_ALLOC_RESULT="0 (test passed)"
else
    export BENCH_ALLOC_RESULT="FAILED (allocations in the event path)"
fi

# Cross binaries: the shipped ones from cross/build.sh's bundles.
export BENCH_CROSS_DIR=$ROOT/target/bench/cross
mkdir -p "$BENCH_CROSS_DIR"
if [ -z "$SMOKE" ]; then
    need=()
    for t in armv5te-unknown-linux-musleabi powerpc-unknown-linux-musl; do
        ls target/cross/dist/shmc-plugin-*-"$t".tar.gz >/dev/null 2>&1 || need+=("$t")
    done
    if [ ${#need[@]} -gt 0 ] && [ "${BENCH_CROSS:-1}" != 0 ]; then
        log "cross/build.sh ${need[*]}"
        bash cross/build.sh "${need[@]}"
    fi
    for tgz in target/cross/dist/shmc-plugin-*.tar.gz; do
        [ -e "$tgz" ] || continue
        t=$(basename "$tgz" .tar.gz | sed -E 's/^shmc-plugin-[^-]+-//')
        mkdir -p "$BENCH_CROSS_DIR/$t"
        tar xzf "$tgz" -O --wildcards '*/usr/sbin/shmc-plugin' > "$BENCH_CROSS_DIR/$t/shmc-plugin"
        chmod 755 "$BENCH_CROSS_DIR/$t/shmc-plugin"
    done
else
    rm -rf "${BENCH_CROSS_DIR:?}"/*
fi

OUT=$ROOT/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ).json
[ -n "$SMOKE" ] && OUT=$ROOT/target/bench/smoke.json
export BENCH_ROOT=$ROOT BENCH_PROFILE_DIR=$PROFILE_DIR
python3 bench/bench.py ${SMOKE:+--smoke} --out "$OUT"
