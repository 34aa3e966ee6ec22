"""Redis adapters: product cache, order store, outbox, product catalog, processed events, locks."""
