# sepguard: API, web page and job worker in one image.
#   docker build -t sepguard .
#   docker run -p 8000:8000 -v sepguard-data:/data sepguard            (API + web page; no worker)
#   docker run --gpus all -v sepguard-data:/data sepguard sepguard worker
# `docker compose up` runs the whole service (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SEPGUARD_DATA_DIR=/data

# libgomp: OpenMP runtime used by torch on the CPU.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# Extras to install besides the service itself ("monitor" adds Flower).
ARG EXTRAS=monitor
COPY . /tmp/build
RUN pip install "/tmp/build[${EXTRAS}]" && rm -rf /tmp/build

RUN useradd --create-home --uid 1000 sepguard \
    && mkdir -p /data \
    && chown sepguard:sepguard /data
USER sepguard
WORKDIR /home/sepguard
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=8)"]

CMD ["sepguard", "serve", "--host", "0.0.0.0", "--no-worker"]
