"""The offline client: a local SQLite event log and the ``milepost`` command over it.

Never imports the server or Litestar; rich is imported only
when a command needs them, so the command starts fast.
"""
