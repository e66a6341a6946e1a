# probed: a small image that runs as non-root on a read-only root filesystem.
#   docker build -t probed .
#   docker run --read-only --tmpfs /tmp -p 8080:8080 probed
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY probed ./probed
RUN python -m venv /opt/probed \
 && /opt/probed/bin/pip install --no-cache-dir --disable-pip-version-check '.[all]' \
 && /opt/probed/bin/python -m pip uninstall --yes --quiet pip setuptools
# pip and setuptools (25 MB) only install; the running image needs neither.

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
