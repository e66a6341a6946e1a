#!/usr/bin/env bash
# The Dockerfile builds FROM python:3.11-slim. Where no container registry is
# reachable (the test machines reach Debian's and Python's package servers
# only), make a stand-in under that tag: Debian bookworm with python3 and venv
# from debootstrap, /usr/local/bin/python like the real image. The root
# filesystem is cached as a tarball, so only the first run pays for
# debootstrap (a few minutes); later runs import it in seconds.
set -euo pipefail
tag=python:3.11-slim
cache=${PROBED_IMAGE_CACHE:-/var/cache/probed-test}
tarball="$cache/python-3.11-slim-standin.tar"
podman() { command podman --runtime runc "$@"; }

if podman image exists "$tag"; then
    exit 0
fi
if [ ! -s "$tarball" ]; then
    mkdir -p "$cache"
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    echo "standin-base-image: debootstrap bookworm into $rootfs (once)" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* \
        "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/*
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
    tar -C "$rootfs" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
fi
podman import --quiet "$tarball" "localhost/$tag" >/dev/null
