# syntax=docker/dockerfile:1
# allot: two stages. `build` installs allot and its dependencies into a virtualenv; the final
# stage copies only that virtualenv and the migrations onto a clean slim base, runs as an
# unprivileged user, and holds no compiler, no pip, no source tree and no secret.
#
#   docker build -t allot .
#   docker run --env-file .env -p 8000:8000 allot                 # serve (ALLOT_WORKERS processes)
#   docker run --env-file .env allot db upgrade                   # one-shot migration
#   docker run --env-file .env allot token --roles admin          # a token for Swagger UI

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# uv installs exactly what uv.lock names, hashes checked, into a virtualenv with no pip,
# compiled to bytecode here: a read-only root cannot cache it, and compiling every module
# at each start made a cold start 4.9 s to ready instead of about 2 s (measured).
# Every dependency ships manylinux wheels, so no compiler is needed even here.
ARG UV_VERSION=0.13.9
RUN python -m venv /opt/uv && /opt/uv/bin/pip install --quiet uv==${UV_VERSION}
COPY pyproject.toml uv.lock README.md ./
COPY app ./app
RUN UV_PROJECT_ENVIRONMENT=/opt/allot UV_PYTHON_DOWNLOADS=never UV_NATIVE_TLS=1 \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --no-cache --compile-bytecode

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="allot" \
      org.opencontainers.image.description="Resource allocation service speaking the OpenStack Placement API" \
      org.opencontainers.image.licenses="Apache-2.0"
# No pip in the final stage, not even the base image's own (nor the wheels it installs from).
RUN (python -m pip uninstall --yes --quiet pip setuptools wheel 2>/dev/null || true) \
 && rm -rf /usr/share/python-wheels /usr/local/lib/python3*/ensurepip/_bundled \
 && groupadd --system --gid 10001 allot \
 && useradd --system --uid 10001 --gid allot --home-dir /srv/allot --no-create-home \
        --shell /usr/sbin/nologin allot
COPY --from=build /opt/allot /opt/allot
# The service finds migrations/ in its working directory (app/migrations_runner.py).
WORKDIR /srv/allot
COPY migrations ./migrations
# var/ is only for the embedded SQLite mode (a quick `docker run` without PostgreSQL). Group 0
# may write it too: OpenShift runs images under an arbitrary uid whose group is root.
RUN mkdir var && chown allot:0 var && chmod 0770 var
ENV PATH=/opt/allot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ALLOT_ENV=production \
    ALLOT_WORKERS=2
USER 10001:10001
EXPOSE 8000
# /healthz answers without a token or the database: "the process serves HTTP".
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["allot"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
