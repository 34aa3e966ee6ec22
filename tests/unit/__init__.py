"""Unit tier: domain, use cases and both HTTP APIs on the in-memory adapters; no network beyond loopback."""
