FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONPATH=/app/platform:/app
WORKDIR /app
COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir . && useradd --create-home dmp
COPY . .
# Static files are built under production settings (hashed names, compressed copies and the manifest production
# pages resolve them through); CI builds and serves them with the same script.
RUN scripts/build-static
USER dmp
EXPOSE 8000
CMD ["gunicorn", "--pythonpath", "platform,.", "--bind", "0.0.0.0:8000", "--workers", "3", "config.wsgi"]
