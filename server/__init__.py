"""The Milepost server: the event store, NATS ingest, pull and pokes.

I/O lives here; the rules it applies (which root an event belongs to, who may
see it) are pure functions in ``server.indexing``.
"""
