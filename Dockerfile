# Image for `docker compose up`; the production image (gunicorn config, healthcheck) is shipped
# by a later change.
FROM python:3.13-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 REGISTRYUI_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md manage.py ./
COPY registryui registryui
COPY dashboard dashboard
COPY templates templates
COPY static static
# The registry binary, for `registry garbage-collect` in the worker: from the official image.
COPY --from=registry:2 /bin/registry /usr/local/bin/registry
RUN pip install --no-cache-dir . \
    && REGISTRYUI_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v0 \
    && useradd --system --uid 10001 --home-dir /data registryui \
    && mkdir -p /data && chown registryui /data
USER registryui
EXPOSE 8000
VOLUME ["/data"]
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py ensure_admin && exec gunicorn registryui.wsgi --bind 0.0.0.0:8000 --workers 2 --threads 4 --access-logfile -"]
