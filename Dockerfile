# The one image every Guanai service runs (compose.yaml picks the command).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GUANAI_DATA_DIR=/var/lib/guanai
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY application ./application
COPY infrastructure ./infrastructure
COPY projections ./projections
COPY api ./api
COPY workers ./workers
COPY guanai ./guanai
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/guanai guanai && mkdir -p /var/lib/guanai /var/lib/guanai-erasures && chown guanai /var/lib/guanai /var/lib/guanai-erasures
USER guanai
EXPOSE 8000
CMD ["guanai", "api", "--host", "0.0.0.0"]
