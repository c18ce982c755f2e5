"""The worker: claim, execute, decide, record; leases, reaping and graceful shutdown."""
