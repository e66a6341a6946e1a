# probed: a small image that runs as non-root on a read-only root filesystem.
#   docker build -t probed .
#   docker run --read-only --tmpfs /tmp -p 8080:8080 probed
FROM python:3.11-slim AS build
# strip (binutils), for the build stage only: the wheels' compiled modules carry
# symbol tables (about 20 MB) that nothing reads at run time.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >/dev/null \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY probed ./probed
# EXTRAS: the pip extras installed. `all` (the default) brings every optional
# driver; `core` none, for the types that come with probed (a sidecar's image:
#   docker build --build-arg EXTRAS=core -t probed:core .).
ARG EXTRAS=all
RUN python -m venv /opt/probed \
 && if [ "$EXTRAS" = core ]; then spec=.; else spec=".[$EXTRAS]"; fi \
 && /opt/probed/bin/pip install --no-cache-dir --disable-pip-version-check "$spec" \
 && /opt/probed/bin/python -m pip uninstall --yes --quiet pip setuptools \
 && find /opt/probed -name '*.so' -exec strip --strip-unneeded {} + \
 && find /opt/probed/lib/python3*/site-packages/botocore/data -mindepth 1 -maxdepth 1 -type d \
      ! -name s3 ! -name sts ! -name sso ! -name sso-oidc -exec rm -rf {} +
# pip and setuptools (25 MB) only install; the running image needs neither.
# botocore describes 400 AWS services (25 MB); the s3 check's client reads s3's
# model, and its credential chain sts' (roles, web identity) and sso's.

FROM python:3.11-slim
# Bytecode was compiled at install time: nothing is written at run time.
ENV PATH=/opt/probed/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROBED_CONFIG=/etc/probed/probed.yaml
COPY --from=build /opt/probed /opt/probed
COPY config/probed.container.yaml /etc/probed/probed.yaml
USER 65532:65532
EXPOSE 8080
# `probed probe` GETs /health/live where the config says probed listens
# (${PROBED_LISTEN} in the default config), with the standard library alone.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["probed", "probe"]
ENTRYPOINT ["probed"]
CMD ["serve"]
