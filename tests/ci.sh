#!/usr/bin/env bash
# The project's test command: `bash tests/ci.sh`.
#
# On a Debian 12 machine, as root, it installs every system package and cargo tool
# the suite needs (only what is missing), then runs the whole suite, step by step:
#   install  fmt  clippy  nostd  test  deb  cross  fuzz  bench
# `bash tests/ci.sh STEP...` runs only the named steps (e.g. `bash tests/ci.sh install test`).
# It stops at the first failing step and names it. Safe to run again: installed
# packages and tools are detected and skipped.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."
ROOT=$PWD
ALL_STEPS=(install fmt clippy nostd test deb cross fuzz bench)
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=("${ALL_STEPS[@]}")

export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# rustup's toolchain (fmt, clippy, the workspace build) comes first; Debian's
# /usr/bin/rustc is only used by the no_std check.
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

# Debian packages: libvirt (build + daemon), QEMU (TCG), tini (a subreaper for
# libvirtd), OpenIPMI's ipmi_sim and ipmitool, and Debian's Rust 1.96 with its
# library source (the no_std check builds `core` for a bare-metal target).
APT_PKGS=(libvirt-dev pkg-config libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-system
          libvirt-clients qemu-system-x86 qemu-utils tini openipmi ipmitool iproute2 procps file
          util-linux rustc-web cargo-web rust-web-src)
NOSTD_TARGET=thumbv7em-none-eabi

STEP=none
STEP_T0=$SECONDS
T0=$SECONDS
TIMES=()

on_exit() {
    local rc=$?
    if [ $rc -ne 0 ]; then
        echo
        if [ ${#TIMES[@]} -gt 0 ]; then
            echo "steps passed:"
            printf '  %s\n' "${TIMES[@]}"
        fi
        echo "==== FAILED: step '$STEP' (exit status $rc) after $((SECONDS - T0)) s"
    fi
}
trap on_exit EXIT

section() {
    if [ "$STEP" != none ]; then TIMES+=("$(printf '%-8s %5d s' "$STEP" $((SECONDS - STEP_T0)))"); fi
    STEP=$1
    STEP_T0=$SECONDS
    echo
    echo "==== [$(date -u +%H:%M:%S)] step: $1 -- $2"
}

apt_get() { apt-get -o DPkg::Lock::Timeout=900 "$@"; }

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}'; }

step_install() {
    section install "system packages and cargo tools"
    [ "$(id -u)" = 0 ] || { echo "must run as root (installs packages, runs libvirtd)"; return 1; }
    local missing=() p
    for p in "${APT_PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    # qemu-system-x86 7.2 and qemu-utils must come from the same QEMU release: a
    # newer qemu-utils (e.g. from backports) Breaks it, so pin qemu-utils to
    # qemu-system-x86's version, downgrading if needed.
    local sysver utilver
    sysver=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
    utilver=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    if [ ${#missing[@]} -gt 0 ] || { [ -n "$sysver" ] && [ "$sysver" != "$utilver" ]; }; then
        echo "missing: ${missing[*]:-none}; qemu-system-x86 ${sysver:-absent}, qemu-utils ${utilver:-absent}"
        apt_get update
        [ -n "$sysver" ] || sysver=$(candidate qemu-system-x86)
        [ -n "$sysver" ] && [ "$sysver" != "(none)" ] || { echo "apt offers no qemu-system-x86"; return 1; }
        local specs=()
        for p in "${APT_PKGS[@]}"; do
            if [ "$p" = qemu-utils ]; then specs+=("qemu-utils=$sysver"); else specs+=("$p"); fi
        done
        # No daemon may be started by the package scripts: libvirtd, virtlogd etc.
        # are started by the tests themselves (tests/support/libvirt-blades.sh).
        local own_policy=
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            own_policy=1
        fi
        local rc=0
        apt_get install -y --no-install-recommends --allow-downgrades "${specs[@]}" || rc=$?
        [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
        [ $rc = 0 ] || return $rc
    else
        echo "all ${#APT_PKGS[@]} Debian packages present"
    fi
    /usr/bin/rustc --version
    [ -d /usr/lib/rustlib/src/rust/library/core ] || { echo "rust-web-src: no library source under /usr/lib/rustlib/src/rust"; return 1; }

    # /dev/kvm without udev is 0600 root: libvirt then re-probes QEMU on every call
    # (tens of seconds per define). Give it to the kvm group as udev would.
    if [ -c /dev/kvm ] && [ "$(stat -c %a /dev/kvm)" = 600 ]; then
        getent group kvm >/dev/null || groupadd -r kvm
        chgrp kvm /dev/kvm && chmod 0660 /dev/kvm && echo "/dev/kvm: group kvm, mode 0660"
    fi

    command -v cargo >/dev/null || { echo "no cargo in PATH (rustup toolchain expected in ~/.cargo/bin)"; return 1; }
    cargo --version
    cargo fmt --version
    cargo clippy --version
    local tool
    for tool in cargo-deb cargo-fuzz; do
        if command -v "$tool" >/dev/null; then
            echo "$tool present: $(command -v "$tool")"
        else
            cargo install --locked "$tool"
        fi
    done
}

step_fmt() {
    section fmt "cargo fmt --all -- --check"
    cargo fmt --all -- --check
}

step_clippy() {
    section clippy "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings
}

# The protocol and the ShMC core must build without std and without alloc. x86_64
# has std, so a host build proves little (a dependency could pull std in): build
# them for a bare-metal target that has only `core`, with Debian's Rust and its
# library source (-Zbuild-std=core; RUSTC_BOOTSTRAP allows -Z on a stable compiler).
# Any use of std or alloc, in the crate or a dependency, fails to compile there.
step_nostd() {
    section nostd "shmc-plugin (--lib) and shelfha-proto without default features, target $NOSTD_TARGET (core only)"
    local env=(env PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
               CARGO_TARGET_DIR="$ROOT/target/nostd")
    "${env[@]}" /usr/bin/cargo --version
    "${env[@]}" /usr/bin/cargo build -Zbuild-std=core --target "$NOSTD_TARGET" \
        -p shelfha-proto --no-default-features
    "${env[@]}" /usr/bin/cargo build -Zbuild-std=core --target "$NOSTD_TARGET" \
        -p shmc-plugin --lib --no-default-features
}

step_test() {
    section test "cargo test --workspace (unit, integration and system tests)"
    cargo test --workspace
}

step_deb() {
    if [ -f tests/deb.sh ]; then
        section deb "tests/deb.sh (agent .deb build and install)"
        bash tests/deb.sh
    else
        section deb "skipped: no tests/deb.sh"
    fi
}

# Static shmc-plugin for ARMv7 and PowerPC, each checked under qemu-user against the host
# build, and their install bundles checked (cross/README.md; installs its own tools).
step_cross() {
    section cross "cross/build.sh armv7-unknown-linux-musleabihf powerpc-unknown-linux-musl"
    bash cross/build.sh armv7-unknown-linux-musleabihf powerpc-unknown-linux-musl
}

step_fuzz() {
    if [ -f fuzz/run-smoke.sh ]; then
        section fuzz "fuzz/run-smoke.sh (fuzz smoke run)"
        bash fuzz/run-smoke.sh
    else
        section fuzz "skipped: no fuzz/run-smoke.sh"
    fi
}

# A short benchmark run (debug build, small capture, host only; BENCHMARKS.md has the full run).
step_bench() {
    section bench "bench/run.sh --smoke (benchmark smoke run)"
    bash bench/run.sh --smoke
}

for s in "${STEPS[@]}"; do
    case " ${ALL_STEPS[*]} " in
        *" $s "*) "step_$s" ;;
        *) echo "unknown step '$s' (steps: ${ALL_STEPS[*]})"; exit 2 ;;
    esac
done
section done "all steps passed"
echo "step times:"
printf '  %s\n' "${TIMES[@]}"
echo "total: $((SECONDS - T0)) s"
