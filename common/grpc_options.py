"""gRPC channel and server options, tuned for calls that travel through an SSH tunnel.

Measured (reference/transport-measurements.md): keepalive needs
``grpc.http2.ping_timeout_ms`` or a frozen tunnel is never noticed; the server must
permit the client's ping rate or it answers GOAWAY ``too_many_pings``; a channel per
peer needs a local subchannel pool or all peers share one connection.

:func:`configure_core` picks gRPC core's I/O engine; it only works before ``grpc`` is
first imported, so :mod:`common` calls it when it loads (every process of the project
imports :mod:`common` before gRPC).
"""

from __future__ import annotations

import os

__all__ = ["CLIENT_OPTIONS", "CORE_EXPERIMENTS", "MAX_MESSAGE_BYTES", "SERVER_OPTIONS", "configure_core"]

# gRPC core's EventEngine (its default I/O since 1.6x) reads the sockets on threads of its
# own and hands each completion on to grpc.aio's poller thread, which wakes the event loop:
# one more thread hop per message than the classic I/O manager, where grpc.aio's poller
# thread polls the sockets itself. Measured with the classic one: an Attach echo round trip
# between two processes about 20 % shorter, and 12-16 % less CPU per keystroke in both the
# agent and the console relay (benchmarks/results/keystroke_ab.md).
CORE_EXPERIMENTS = "-event_engine_client,-event_engine_listener,-event_engine_for_all_other_endpoints"


def configure_core() -> None:
    """Select gRPC core's classic I/O manager, unless GRPC_EXPERIMENTS is already set.

    gRPC reads the variable once, when ``grpc`` is first imported; child processes inherit it.
    """
    os.environ.setdefault("GRPC_EXPERIMENTS", CORE_EXPERIMENTS)

# One message may carry at most this much (attach output is coalesced to 64 KiB).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

CLIENT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.ping_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    # Not a delay: gRPC core gives each connection attempt this long to receive the peer's
    # HTTP/2 SETTINGS. At 200 ms, a loaded host (50 agents answering at once on 2 cores)
    # failed one agent's first call in five, and the console pinged it again only after
    # a whole heartbeat interval. A dead peer ends the tunnel long before this runs out.
    ("grpc.min_reconnect_backoff_ms", 10_000),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 1_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
