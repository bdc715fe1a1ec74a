# Shelfmark image: web (gunicorn) and Celery workers share it.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
# The manifest (hashed names) is written only when the setting is on; at run time it is found and used.
RUN DJANGO_SETTINGS_MODULE=leaderboard.settings DEBUG=false SHELFMARK_STATIC_MANIFEST=true \
    python manage.py collectstatic --noinput

EXPOSE 8000
CMD ["gunicorn", "leaderboard.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]
