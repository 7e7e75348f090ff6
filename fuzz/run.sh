#!/bin/sh
# Runs every fuzz target for SECONDS (default 20) seconds each, seeded from seeds/.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); works on the stable
# toolchain through RUSTC_BOOTSTRAP=1 (cargo fuzz passes -Zsanitizer=address).
set -eu
cd "$(dirname "$0")"
seconds="${1:-20}"
for target in ipmb_stream ipmb_message event_decoder agent_datagram; do
    mkdir -p "corpus/$target"
    echo "fuzzing $target for ${seconds}s"
    leaks=1
    if [ "$target" = agent_datagram ]; then
        # The agent runs each libvirt call on a detached thread bounded by a deadline; such a
        # thread may still be exiting when LeakSanitizer looks, and its glibc thread-local
        # destructor record (32 bytes) is then reported as a leak.
        leaks=0
    fi
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -detect_leaks="$leaks"
done
