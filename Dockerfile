# The web service of docker-compose.yml: gunicorn serving Shared Ledger.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# DEBUG=0: the manifest storage that serving with DEBUG off reads (a build-only SECRET_KEY).
RUN DEBUG=0 SECRET_KEY=collectstatic-not-secret DATABASE_URL=postgres://unused@localhost/unused \
    python manage.py collectstatic --noinput -v0
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && gunicorn ledger_project.wsgi -b 0.0.0.0:8000 -w ${WEB_CONCURRENCY:-3}"]
