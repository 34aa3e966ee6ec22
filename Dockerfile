# One image for both services; the command picks which one runs.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# a container's loopback is its own: listen on every interface, so that `-p 8080:8080` reaches it
ENV ORDER_SERVICE_HOST=0.0.0.0 PRODUCT_SERVICE_HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && useradd --system --uid 10001 app
USER app
EXPOSE 8080 8081
CMD ["order-service", "serve"]
