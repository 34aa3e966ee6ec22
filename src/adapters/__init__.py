"""Implementations of the application's ports: Redis, NATS JetStream, aiohttp, and in-memory twins."""
