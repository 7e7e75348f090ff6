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
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds"
done
