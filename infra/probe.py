"""Container health probes, light enough to run every few seconds (no Feast, Spark or MLflow
import: about 0.4 s of CPU where `braid --help` takes several seconds).

    python -m infra.probe http http://127.0.0.1:8000/health   # the API, feast serve, MLflow
    python -m infra.probe kafka                 # the broker of KAFKA_BOOTSTRAP_SERVERS

Exit status 0 when the check passes, 1 otherwise (one line on stderr saying what failed). The
image's default HEALTHCHECK is `kafka`: the stream processors serve no HTTP, and what they need
to make progress is their broker (with the `KAFKA_*` settings they use, SASL and TLS included).
"""

from __future__ import annotations

import argparse
import sys

from confluent_kafka.admin import AdminClient

from infra.health import http_ok
from streaming.settings import KafkaSettings


def kafka_answers(settings: KafkaSettings, timeout_s: float) -> bool:
    """True if the configured cluster answers a metadata request naming at least one broker."""
    admin = AdminClient({**settings.client_config(), "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except Exception:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    checks = parser.add_subparsers(dest="check", required=True)
    http = checks.add_parser("http", help="GET the URL: healthy when it answers below 500.")
    http.add_argument("url")
    http.add_argument("--timeout", type=float, default=3.0, help="Seconds (default 3).")
    kafka = checks.add_parser("kafka", help="A metadata request to KAFKA_BOOTSTRAP_SERVERS.")
    kafka.add_argument("--timeout", type=float, default=5.0, help="Seconds (default 5).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check == "http":
        healthy = http_ok(args.url, timeout_s=args.timeout)
        what = args.url
    else:
        settings = KafkaSettings()
        healthy = kafka_answers(settings, args.timeout)
        what = f"kafka {settings.bootstrap_servers}"
    if not healthy:
        print(f"unhealthy: {what}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
