"""Benchmarks: speed and memory against a baseline measured in the same run."""

import common  # noqa: F401 - first, so gRPC core is configured as in the product (common.grpc_options)
