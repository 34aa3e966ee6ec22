"""The wire: private cattrs converters for HTTP JSON and event JSON (camelCase, exact Decimal)."""
