"""The pure core: products, orders, pricing discrepancies and flags. No I/O, no frameworks."""
