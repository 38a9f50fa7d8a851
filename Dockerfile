# iorag HTTP server. Offline by default; pass -e IOINTELLIGENCE_API_KEY=... for IO Intelligence.
#
# It listens on 0.0.0.0, so it needs API keys (kept hashed in the volume) or an explicit
# IORAG_INSECURE=1; without either it stops with a one-line error. Create a key once:
#   docker run --rm -v iorag:/data IMAGE iorag keys add admin --scope admin   # prints the secret once
#   docker run -d -p 8000:8000 -v iorag:/data IMAGE
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 IORAG_INDEX_DIR=/data/index IORAG_LOG_FORMAT=json
WORKDIR /app

COPY pyproject.toml README.md ./
COPY indexer ./indexer
COPY service ./service
COPY corpora ./corpora
RUN pip install --no-cache-dir ".[documents]" \
    && useradd --create-home --uid 1000 iorag \
    && mkdir -p /data && chown iorag /data

USER iorag
VOLUME ["/data"]
EXPOSE 8000
# Index the sample corpus on first start when the volume is empty, then serve (keys or IORAG_INSECURE=1 required).
CMD ["sh", "-c", "[ -e \"$IORAG_INDEX_DIR/CURRENT\" ] || iorag index corpora/; exec iorag serve --host 0.0.0.0 --port 8000"]
