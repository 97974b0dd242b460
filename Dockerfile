FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 GATEHOUSE_VAR_DIR=/app/var
WORKDIR /app
COPY requirements.txt build-constraints.txt ./
RUN pip install --no-cache-dir --upgrade pip && \
    pip install --no-cache-dir --build-constraint build-constraints.txt -r requirements.txt
COPY . .
RUN DEBUG=1 python manage.py collectstatic --noinput && rm -f var/secret_key && \
    useradd --system --home /app gatehouse && chown -R gatehouse /app/var
USER gatehouse
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
