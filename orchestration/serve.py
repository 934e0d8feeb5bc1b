"""`python -m orchestration.serve`: register Braid's deployments with the Prefect server at
`PREFECT_API_URL` and run their flow runs (scheduled, triggered or `prefect deployment run`)
in subprocesses until SIGTERM or SIGINT. `braid up` starts it as the `prefect-flows` service,
with Prefect's runner webserver on for its health check (`GET /health`)."""

from __future__ import annotations

from prefect import serve

from orchestration.deployments import deployments


def main() -> None:
    serve(*deployments(), print_starting_message=False)


if __name__ == "__main__":
    main()
