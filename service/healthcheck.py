"""python -m service.healthcheck [--target localhost:50051] [--service NAME]

Exit 0 when the server reports SERVING, 1 otherwise: the container HEALTHCHECK runs this."""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m service.healthcheck", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    port = os.environ.get("TRANSLATOR_PORT", "50051")
    p.add_argument("--target", default=f"localhost:{port}")
    p.add_argument("--service", default="", help="service name ('' = the whole server)")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--ca", default=os.environ.get("TRANSLATOR_HEALTHCHECK_CA", ""),
                   help="CA certificate when the server uses TLS")
    args = p.parse_args(argv)
    if args.ca:
        with open(args.ca, "rb") as f:
            channel = grpc.secure_channel(args.target, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.insecure_channel(args.target)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    except grpc.RpcError as e:
        print(f"unhealthy: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
