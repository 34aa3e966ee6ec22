"""`make bench`: the project against its raw baselines, measured in the same run.

Every scenario runs against the project and against a raw baseline doing the bare minimum of
the same job (an aiohttp hello world, raw nats-py, raw redis), alternating for several rounds;
the table shows the medians and their ratio. Nothing here is a test: no timing is asserted.

- `python -m bench` (what `make bench` runs): every scenario, the table, `bench/results.json`.
- `python -m bench.loadgen`: the HTTP load generator (closed and open loop), a process of its own.
- `python -m bench.profile`: py-spy profiles of the order-create and event-apply paths.
"""
