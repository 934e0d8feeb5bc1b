"""The embedded local stack: services as plain processes, started and stopped by PID.

`infra.stack` is the entry point (`up`, `down`, `status`, `restart_service`); `infra.services`
holds one small module per service; `infra.processes` knows how to run any of them.
"""
