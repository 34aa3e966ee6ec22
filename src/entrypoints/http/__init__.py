"""The aiohttp side of both services: routes, error mapping, request parsing."""
