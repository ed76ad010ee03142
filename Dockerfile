# milepost-server image: the package installed the README way (`pip install .`).
#   docker build -t milepost-server .        (compose.yaml builds it for you)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MILEPOST_SERVER_HOME=/var/lib/milepost

# An unprivileged user; nats-auth/ is where `milepost-server nats-config` writes the
# NATS authorization file (a named volume mounted there inherits this ownership).
RUN useradd --system --create-home --home-dir /var/lib/milepost milepost \
    && mkdir -p /var/lib/milepost/nats-auth \
    && chown -R milepost /var/lib/milepost

WORKDIR /src
COPY pyproject.toml README.md ./
COPY events ./events
COPY projections ./projections
COPY client ./client
COPY server ./server
RUN pip install --no-cache-dir . && rm -rf /src

WORKDIR /var/lib/milepost
USER milepost
EXPOSE 8321
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8321/health', timeout=2)"]
CMD ["milepost-server", "run", "--host", "0.0.0.0", "--port", "8321"]
