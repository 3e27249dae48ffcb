# syntax=docker/dockerfile:1
# The dashboard's image: gunicorn (gunicorn.conf.py) serving Django, WhiteNoise serving the static
# files collected at build time, and the registry binary for garbage collection in the worker.
#   docker build -t registryui .                                   # GC binary from registry:2
#   docker build --build-arg REGISTRY_IMAGE=registry:3 -t registryui .   # ... from registry:3
# Run the GC binary of the registry you run: compose.registry3.yml passes the build arg.
ARG PYTHON_IMAGE=python:3.13-slim
ARG REGISTRY_IMAGE=registry:2

# -- the registry binary (`registry garbage-collect`), from the official image ---------------------
FROM ${REGISTRY_IMAGE} AS registry-binary

# -- build: dependencies into a venv, the app, static files with hashed names ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first (this layer is rebuilt only when they change). Only the dependencies: the
# app runs from /app, so there is exactly one copy of its code in the image.
COPY pyproject.toml ./
COPY deploy/requirements.txt deploy/requirements.txt
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt -r deploy/requirements.txt
COPY manage.py gunicorn.conf.py ./
COPY registryui registryui
COPY dashboard dashboard
COPY templates templates
COPY static static
# collectstatic with the manifest storage forced on (the manifest is what it writes): app.css
# becomes app.<hash>.css plus .gz/.br, which WhiteNoise serves with a one-year immutable
# Cache-Control. The secret and data dir exist only for this command.
RUN REGISTRYUI_STATIC_MANIFEST=true REGISTRYUI_SECRET_KEY=collectstatic-only REGISTRYUI_DATA_DIR=/tmp/build-data \
        python manage.py collectstatic --noinput -v0 \
    && test -s staticfiles/staticfiles.json \
    && python -m compileall -q registryui dashboard gunicorn.conf.py \
    && rm -rf /tmp/build-data

# -- the image ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="registryui" \
      org.opencontainers.image.description="A web dashboard for a private Docker/OCI registry (Distribution registry:2 / registry:3)"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    REGISTRYUI_DATA_DIR=/data REGISTRYUI_LISTEN=0.0.0.0:8000 REGISTRYUI_STATIC_MANIFEST=true
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home registryui \
    && mkdir -p /data && chown registryui:registryui /data
COPY --from=registry-binary /bin/registry /usr/local/bin/registry
COPY --from=build /opt/venv /opt/venv
# Owned by root: the app cannot change its own code or static files.
COPY --from=build /app /app
WORKDIR /app
# Numeric, so Kubernetes runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8000
VOLUME ["/data"]
# Liveness: the process answers (no registry, no database). As Host it sends the first
# REGISTRYUI_ALLOWED_HOSTS entry, which Django accepts; /-/live is exempt from the HTTPS redirect.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os,urllib.request as u;h=(os.environ.get('REGISTRYUI_ALLOWED_HOSTS') or 'localhost').split(',')[0].strip().lstrip('.').replace('*','') or 'localhost';p=(os.environ.get('REGISTRYUI_LISTEN') or ':8000').rsplit(':',1)[-1];u.urlopen(u.Request('http://127.0.0.1:'+p+'/-/live',headers={'Host':h}),timeout=4)"]
# Migrations and the first admin on every start (both do nothing when done), then gunicorn.
# With several replicas on one database, compose.postgres.yml runs them once in a `migrate`
# service instead, and starts the dashboards with only the gunicorn part.
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py ensure_admin && exec gunicorn -c gunicorn.conf.py registryui.wsgi"]
