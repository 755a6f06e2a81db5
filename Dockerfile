FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONPATH=/app/platform:/app
WORKDIR /app
COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir . && useradd --create-home dmp
COPY . .
RUN DMP_ENV=development python manage.py collectstatic --noinput
USER dmp
EXPOSE 8000
CMD ["gunicorn", "--pythonpath", "platform,.", "--bind", "0.0.0.0:8000", "--workers", "3", "config.wsgi"]
