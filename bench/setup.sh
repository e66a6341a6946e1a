#!/usr/bin/env bash
# What the benchmarks need beyond the test dependencies: wrk (load generator)
# and Debian's prometheus-blackbox-exporter (the peer probed is compared with).
set -euo pipefail
scripts/install-test-deps.sh
packages=()
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || packages+=(prometheus-blackbox-exporter)
if ((${#packages[@]})); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
