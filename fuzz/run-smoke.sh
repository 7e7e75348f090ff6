#!/bin/sh
# CI smoke run: builds every fuzz target and runs each for FUZZ_SECONDS
# (default 10) seconds from the committed seeds (agent_datagram included: the blade
# agent's receive path). Fails on any crash.
set -eu
cd "$(dirname "$0")"
exec ./run.sh "${FUZZ_SECONDS:-10}"
