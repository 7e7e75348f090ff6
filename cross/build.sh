#!/usr/bin/env bash
# Static shmc-plugin for shelf-manager CPUs: build, test under emulation, bundle.
#
#   cross/build.sh [TARGET...]      (default: all four targets)
#
# Targets: armv5te-unknown-linux-musleabi armv7-unknown-linux-musleabihf
#          powerpc-unknown-linux-musl (soft-float) mips-unknown-linux-musl (MIPS32r1)
#
# Per target: build with Debian's Rust 1.96 (-Zbuild-std) and zig as the musl
# linker (cross/linkers/, cross/cargo-config.toml), check size and `file`, run
# `shmc-plugin replay` over every capture in shmc-plugin/tests/captures/ plus a
# generated large one under qemu-user-static with an old CPU model and compare
# stdout, stderr and exit code byte for byte with the host build, measure peak
# RSS, then build the install bundle and check it (cross/check-bundle.sh).
#
# On a fresh Debian 12 machine (as root) it installs what it needs: the Debian
# packages below if missing, and the pinned zig and cargo-zigbuild (see
# cross/versions.env) into a virtualenv in the cache directory.
#
# Environment:
#   SHELFHA_CROSS_CACHE  cache (venv, zig cache, cargo target dirs, host build);
#                        default /var/cache/shelfha-cross (kept between runs)
#   SHELFHA_CROSS_OUT    results: bundles, summary; default <repo>/target/cross
#   SHMC_PANIC           abort | immediate-abort | auto (default): auto ships the
#                        panic=abort build if it fits the size budget, otherwise
#                        the -Cpanic=immediate-abort build (sizes of both reported)
#   SHMC_FEATURES        shmc-plugin features to build (host and cross alike).
#                        Default "std": the firmware build, whose event source is
#                        the IPMB device of the shelf manager it runs in. The
#                        crate's default features add `rmcp` (RMCP+ LAN and system
#                        interface event sources, through ipmi-rs: ~140-160 KB
#                        more, over the ARM budget); "default" builds those.
#   SHMC_BUDGET=warn     report a binary over its size/RSS budget instead of failing
#   SHMC_MEASURE_BOTH=1  also build (and report the size of) the panic variant
#                        that is not shipped
#   SHELFHA_CROSS_NO_INSTALL=1  never install anything (fail if missing)
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=cross/versions.env
. "$HERE/versions.env"

ALL_TARGETS=(armv5te-unknown-linux-musleabi armv7-unknown-linux-musleabihf
             powerpc-unknown-linux-musl mips-unknown-linux-musl)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")

CACHE=${SHELFHA_CROSS_CACHE:-/var/cache/shelfha-cross}
OUT=${SHELFHA_CROSS_OUT:-$ROOT/target/cross}
PANIC_MODE=${SHMC_PANIC:-auto}
CAPTURES_DIR=$ROOT/shmc-plugin/tests/captures
FEATURES=${SHMC_FEATURES-std}
FEATURE_ARGS=()
[ "$FEATURES" = default ] || FEATURE_ARGS=(--no-default-features --features "$FEATURES")

# Bundles of the firmware build go to dist/, others to dist-<features>/.
DIST=$OUT/dist
[ "$FEATURES" = std ] || DIST=$OUT/dist-${FEATURES//,/-}

over_budget() {
    if [ "${SHMC_BUDGET:-}" = warn ]; then echo "OVER BUDGET: $*"; OVER+=("$*"); else die "$*"; fi
}
OVER=()
APT_PKGS=(qemu-user-static file busybox time python3 python3-venv rustc-web cargo-web rust-web-src)
export DEBIAN_FRONTEND=noninteractive

T0=$SECONDS
log() { echo "==== [$(date -u +%H:%M:%S) +$((SECONDS - T0))s] $*"; }
die() { echo "cross/build.sh: $*" >&2; exit 1; }

# Per target: qemu binary, CPU model, size budget (bytes), what `file` says.
target_info() {
    case $1 in
        armv5te-unknown-linux-musleabi) QEMU=qemu-arm-static QCPU=arm926 BUDGET=$BUDGET_ARM
            FILE_ARCH="ARM" CPU_NOTE="ARMv5TE, soft-float, e.g. ARM926EJ-S" ;;
        armv7-unknown-linux-musleabihf) QEMU=qemu-arm-static QCPU=cortex-a8 BUDGET=$BUDGET_ARM
            FILE_ARCH="ARM" CPU_NOTE="ARMv7-A, VFPv3 hard-float, e.g. Cortex-A8" ;;
        powerpc-unknown-linux-musl) QEMU=qemu-ppc-static QCPU=e500v2 BUDGET=$BUDGET_DEFAULT
            FILE_ARCH="PowerPC" CPU_NOTE="32-bit PowerPC, soft-float: e500v2, 405, e300, 750" ;;
        mips-unknown-linux-musl) QEMU=qemu-mips-static QCPU=4Kc BUDGET=$BUDGET_DEFAULT
            FILE_ARCH="MIPS" CPU_NOTE="MIPS32r1 big-endian, soft-float, e.g. 4Kc" ;;
        *) die "unknown target $1 (known: ${ALL_TARGETS[*]})" ;;
    esac
}
for t in "${TARGETS[@]}"; do target_info "$t"; done
case $PANIC_MODE in abort | immediate-abort | auto) ;; *) die "SHMC_PANIC=$PANIC_MODE: abort, immediate-abort or auto" ;; esac

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

setup() {
    log "setup: Debian packages, zig $ZIGLANG_VERSION, cargo-zigbuild $CARGO_ZIGBUILD_VERSION"
    local missing=() p
    for p in "${APT_PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
        [ -z "${SHELFHA_CROSS_NO_INSTALL:-}" ] || die "missing Debian packages: ${missing[*]}"
        [ "$(id -u)" = 0 ] || die "missing Debian packages (${missing[*]}): run as root"
        echo "installing: ${missing[*]}"
        apt-get -o DPkg::Lock::Timeout=900 update
        apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing[@]}"
    fi
    case $(/usr/bin/rustc --version) in
        "rustc $RUST_DEB_VERSION_PREFIX"*) ;;
        *) die "/usr/bin/rustc is $(/usr/bin/rustc --version), want $RUST_DEB_VERSION_PREFIX (rustc-web)" ;;
    esac
    [ -d /usr/lib/rustlib/src/rust/library/std ] || die "no library source in /usr/lib/rustlib/src/rust (rust-web-src)"

    mkdir -p "$CACHE" "$OUT"
    local venv=$CACHE/venv have_zig have_zb
    [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
    # `pip show` fails for a package not installed yet (a new venv): not an error here.
    have_zig=$("$venv/bin/python3" -m pip show ziglang 2>/dev/null | awk '/^Version:/ {print $2}' || true)
    have_zb=$("$venv/bin/python3" -m pip show cargo-zigbuild 2>/dev/null | awk '/^Version:/ {print $2}' || true)
    if [ "$have_zig" != "$ZIGLANG_VERSION" ] || [ "$have_zb" != "$CARGO_ZIGBUILD_VERSION" ]; then
        [ -z "${SHELFHA_CROSS_NO_INSTALL:-}" ] || die "zig/cargo-zigbuild not at the pinned versions in $venv"
        # pip's own CA bundle does not know a site's TLS-intercepting proxy; the system
        # store (as apt and curl use it) does.
        local cert=${PIP_CERT:-}
        [ -n "$cert" ] || [ ! -r /etc/ssl/certs/ca-certificates.crt ] || cert=/etc/ssl/certs/ca-certificates.crt
        PIP_CERT=$cert "$venv/bin/python3" -m pip install --disable-pip-version-check -q \
            "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
    fi
    echo "$(/usr/bin/rustc --version); zig $("$venv/bin/python3" -m ziglang version); $("$venv/bin/cargo-zigbuild" --version)"
    echo "$("$QEMU" --version | head -1)"
}

# The host build: the normal toolchain (rustup's if present, else Debian's
# cargo), no cross settings, same size-tuned profile. It is the reference.
host_build() {
    log "host build (reference): shmc-plugin, profile release-shmc"
    local path=$PATH
    [ -d "$HOME/.cargo/bin" ] && path="$HOME/.cargo/bin:$PATH"
    (cd "$ROOT" && env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u RUSTC -u RUSTC_BOOTSTRAP PATH="$path" \
        CARGO_TARGET_DIR="$CACHE/host-target" \
        cargo build --profile release-shmc -p shmc-plugin --bin shmc-plugin "${FEATURE_ARGS[@]}")
    HOST_BIN=$CACHE/host-target/release-shmc/shmc-plugin
    [ -x "$HOST_BIN" ] || die "no host binary at $HOST_BIN"
    VERSION=$("$HOST_BIN" --version | awk '{print $2}')
    [ -n "$VERSION" ] || die "host binary printed no version"
}

# Captures with their configuration: X.cap uses X.toml beside it if present,
# else shelf.toml of its directory. Plus the generated large capture.
collect_captures() {
    CAPS=() CFGS=()
    local c cfg
    for c in "$CAPTURES_DIR"/*.cap; do
        [ -e "$c" ] || continue
        cfg=${c%.cap}.toml
        [ -e "$cfg" ] || cfg=$(dirname "$c")/shelf.toml
        [ -e "$cfg" ] || die "no configuration for $c"
        CAPS+=("$c") CFGS+=("$cfg")
    done
    [ ${#CAPS[@]} -gt 0 ] || die "no captures in $CAPTURES_DIR"
    LARGE=$CACHE/large-$LARGE_CAPTURE_LINES.cap
    if [ ! -s "$LARGE" ]; then
        python3 "$HERE/gen-capture.py" "$LARGE_CAPTURE_LINES" >"$LARGE.tmp" && mv "$LARGE.tmp" "$LARGE"
    fi
    [ -e "$CAPTURES_DIR/shelf.toml" ] || die "no $CAPTURES_DIR/shelf.toml for the large capture"
    CAPS+=("$LARGE") CFGS+=("$CAPTURES_DIR/shelf.toml")

    log "host reference outputs: ${#CAPS[@]} captures"
    REF=$OUT/ref
    rm -rf "$REF" && mkdir -p "$REF"
    local i rc n
    for i in "${!CAPS[@]}"; do
        n=$(basename "${CAPS[$i]}" .cap)
        rc=0
        "$HOST_BIN" replay --config "${CFGS[$i]}" "${CAPS[$i]}" >"$REF/$n.out" 2>"$REF/$n.err" || rc=$?
        echo "$rc" >"$REF/$n.rc"
        [ -s "$REF/$n.out" ] || [ "$rc" != 0 ] || die "host replay of $n printed nothing"
    done
    /usr/bin/time -o "$OUT/time.txt" -f %M "$HOST_BIN" replay --config "$CAPTURES_DIR/shelf.toml" "$LARGE" \
        >/dev/null 2>&1 || true
    HOST_RSS_KB=$(tail -1 "$OUT/time.txt")
}

# Cross build of one target in one panic variant; sets BIN.
# std is built with the feature `optimize_for_size` only: that drops std's
# default `backtrace` (symbolizing backtraces: gimli, addr2line, rustc-demangle,
# about 70 KB) and `panic-unwind`; panic messages are kept with panic=abort.
cross_build() {
    local target=$1 variant=$2 tdir extra=()
    if [ "$variant" = abort ]; then
        tdir=$CACHE/target
    else
        tdir=$CACHE/target-immediate-abort
        # Appended to the target's rustflags from cross/cargo-config.toml.
        extra=(--config "target.$target.rustflags=[\"-Zunstable-options\",\"-Cpanic=immediate-abort\"]")
    fi
    log "$target: cargo build ($variant)"
    local t=$SECONDS
    (cd "$ROOT" && env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_TARGET \
        PATH="$CACHE/venv/bin:/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
        ZIG_GLOBAL_CACHE_DIR="$CACHE/zig" CARGO_TARGET_DIR="$tdir" \
        /usr/bin/cargo build --config "$HERE/cargo-config.toml" "${extra[@]}" \
        --profile release-shmc -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size \
        --target "$target" \
        -p shmc-plugin --bin shmc-plugin "${FEATURE_ARGS[@]}")
    BUILD_S=$((SECONDS - t))
    BIN=$tdir/$target/release-shmc/shmc-plugin
    [ -x "$BIN" ] || die "$target: no binary at $BIN"
}

size_of() { stat -c %s "$1"; }

# Emulation test: every capture, byte-for-byte equal stdout, stderr, exit code.
emulation_test() {
    local target=$1 bin=$2 i n rc fails=0 work
    target_info "$target"
    local desc
    desc=$(file -b "$bin")
    case $desc in
        *"statically linked"*) ;;
        *) die "$target: not a static executable: $desc" ;;
    esac
    case $desc in *"$FILE_ARCH"*) ;; *) die "$target: file says $desc, want $FILE_ARCH" ;; esac
    if [ "$target" = powerpc-unknown-linux-musl ]; then
        python3 "$HERE/ppc-no-fpu.py" "$bin" || die "$target: not soft-float"
    fi
    log "$target: emulation test, $QEMU -cpu $QCPU, ${#CAPS[@]} captures"
    work=$OUT/$target/emu
    rm -rf "$work" && mkdir -p "$work"
    for i in "${!CAPS[@]}"; do
        n=$(basename "${CAPS[$i]}" .cap)
        rc=0
        "$QEMU" -cpu "$QCPU" "$bin" replay --config "${CFGS[$i]}" "${CAPS[$i]}" \
            >"$work/$n.out" 2>"$work/$n.err" || rc=$?
        if [ "$rc" != "$(cat "$REF/$n.rc")" ]; then
            echo "FAIL $target $n: exit code $rc, host $(cat "$REF/$n.rc")"; head -5 "$work/$n.err"; fails=$((fails + 1))
        elif ! cmp -s "$work/$n.out" "$REF/$n.out"; then
            echo "FAIL $target $n: stdout differs from the host build"
            diff "$REF/$n.out" "$work/$n.out" | head -10 || true
            fails=$((fails + 1))
        elif ! cmp -s "$work/$n.err" "$REF/$n.err"; then
            echo "FAIL $target $n: stderr differs from the host build"
            diff "$REF/$n.err" "$work/$n.err" | head -10 || true
            fails=$((fails + 1))
        else
            echo "ok   $target $n (exit $rc, $(wc -l <"$work/$n.out") lines)"
        fi
    done
    [ $fails = 0 ] || die "$target: $fails of ${#CAPS[@]} captures differ from the host build"
    /usr/bin/time -o "$work/time.txt" -f %e "$QEMU" -cpu "$QCPU" "$bin" replay \
        --config "$CAPTURES_DIR/shelf.toml" "$LARGE" >/dev/null 2>&1 || true
    EMU_LARGE_S=$(tail -1 "$work/time.txt")

    # Peak memory while replaying the large capture (output checked again).
    local line
    line=$(python3 "$HERE/guest-rss.py" "$work/rss.out" "$QEMU" -cpu "$QCPU" -- \
        "$bin" replay --config "$CAPTURES_DIR/shelf.toml" "$LARGE" 2>/dev/null) ||
        die "$target: RSS measurement failed: $line"
    cmp -s "$work/rss.out" "$REF/$(basename "$LARGE" .cap).out" || die "$target: output differs in the RSS run"
    GUEST_RSS_KB=$(echo "$line" | sed -n 's/.*guest_peak_kb=\([0-9]*\).*/\1/p')
    QEMU_RSS_KB=$(echo "$line" | sed -n 's/.*qemu_peak_kb=\([0-9]*\).*/\1/p')
    echo "peak RSS replaying $(basename "$LARGE"): guest ${GUEST_RSS_KB} KB, whole emulator ${QEMU_RSS_KB} KB"
    case $target in
        arm*) [ "$((GUEST_RSS_KB * 1024))" -le "$RSS_BUDGET_ARM" ] ||
            over_budget "$target: peak RSS ${GUEST_RSS_KB} KB over the budget of $((RSS_BUDGET_ARM / 1024)) KB" ;;
    esac
}

make_bundle() {
    local target=$1 bin=$2
    target_info "$target"
    local name=shmc-plugin-$VERSION-$target stage
    stage=$OUT/$target/stage
    rm -rf "$stage" && mkdir -p "$stage/$name"
    local d=$stage/$name
    install -D -m 0755 "$bin" "$d/usr/sbin/shmc-plugin"
    install -D -m 0755 "$HERE/bundle/shmc-plugin.init" "$d/etc/init.d/shmc-plugin"
    install -D -m 0644 "$HERE/bundle/shmc-plugin.toml" "$d/etc/shelfha/shmc-plugin.toml.example"
    sed -e "s|@VERSION@|$VERSION|g" -e "s|@TARGET@|$target|g" -e "s|@CPU_NOTE@|$CPU_NOTE|g" \
        -e "s|@FEATURES@|$FEATURES|g" -e "s|@SIZE@|$(size_of "$bin")|g" -e "s|@RSS_KB@|$GUEST_RSS_KB|g" \
        "$HERE/bundle/INSTALL" >"$d/INSTALL"
    (cd "$d" && sha256sum usr/sbin/shmc-plugin etc/init.d/shmc-plugin \
        etc/shelfha/shmc-plugin.toml.example INSTALL >SHA256SUMS)
    mkdir -p "$DIST"
    BUNDLE=$DIST/$name.tar.gz
    # Reproducible: fixed owner, order and times.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - "$name" |
        gzip -9n >"$BUNDLE"
    rm -rf "$stage"
    log "$target: bundle $BUNDLE ($(size_of "$BUNDLE") bytes)"
    "$HERE/check-bundle.sh" "$BUNDLE" "$HOST_BIN"
}

setup
host_build
collect_captures

SUMMARY=()
for target in "${TARGETS[@]}"; do
    target_info "$target"
    SIZE_ABORT=- SIZE_IA=- BUILD_ABORT=- BUILD_IA=-
    SHIP=
    if [ "$PANIC_MODE" != immediate-abort ]; then
        cross_build "$target" abort
        SIZE_ABORT=$(size_of "$BIN") BUILD_ABORT=$BUILD_S BIN_ABORT=$BIN
        echo "$target panic=abort: $SIZE_ABORT bytes (budget $BUDGET)"
        if [ "$PANIC_MODE" = abort ] || [ "$SIZE_ABORT" -le "$BUDGET" ]; then SHIP=$BIN_ABORT SHIP_KIND=abort; fi
    fi
    if [ "$PANIC_MODE" = immediate-abort ] || [ -z "$SHIP" ] || [ -n "${SHMC_MEASURE_BOTH:-}" ]; then
        cross_build "$target" immediate-abort
        SIZE_IA=$(size_of "$BIN") BUILD_IA=$BUILD_S
        echo "$target panic=immediate-abort: $SIZE_IA bytes (budget $BUDGET)"
        [ -n "$SHIP" ] || SHIP=$BIN SHIP_KIND=immediate-abort
    fi
    if [ "$PANIC_MODE" = immediate-abort ] && [ -n "${SHMC_MEASURE_BOTH:-}" ]; then
        cross_build "$target" abort
        SIZE_ABORT=$(size_of "$BIN") BUILD_ABORT=$BUILD_S
        echo "$target panic=abort: $SIZE_ABORT bytes (budget $BUDGET)"
    fi
    [ "$(size_of "$SHIP")" -le "$BUDGET" ] ||
        over_budget "$target: $(size_of "$SHIP") bytes ($SHIP_KIND) over the budget of $BUDGET bytes"
    emulation_test "$target" "$SHIP"
    make_bundle "$target" "$SHIP"
    SUMMARY+=("$(printf '%-32s %-15s %9s %9s %7s %9s %9s %8s %6s %6s' "$target" "$SHIP_KIND" \
        "$SIZE_ABORT" "$SIZE_IA" "$BUDGET" "$GUEST_RSS_KB" "$QEMU_RSS_KB" "$EMU_LARGE_S" \
        "$BUILD_ABORT" "$BUILD_IA")")
done

{
    echo "shmc-plugin $VERSION, features: $FEATURES; host peak RSS replaying the large capture: $HOST_RSS_KB KB"
    printf '%-32s %-15s %9s %9s %7s %9s %9s %8s %6s %6s\n' target shipped size_abort size_imm budget \
        guest_kb qemu_kb large_s bld_ab bld_ia
    printf '%s\n' "${SUMMARY[@]}"
} | tee "$OUT/summary.txt"
if [ ${#OVER[@]} -gt 0 ]; then printf 'OVER BUDGET: %s\n' "${OVER[@]}"; fi
log "done: ${#TARGETS[@]} target(s) built, tested under emulation and bundled in $DIST"
