"""The one agent client: every caller on the shell side reaches agents through it.

:class:`~common.client.agent_client.AgentClient` (a persistent tunnel with a Ping
heartbeat and typed calls), :class:`~common.client.attach_call.AttachCall` (one gRPC
Attach stream) and :class:`~common.client.attach_channel_call.AttachChannelCall` (the same
stream on the agent's attach channel, which the console uses) return :mod:`common.domain`
types and are the only place on the client side where a failed call's status becomes a
domain error (:func:`common.errors.from_rpc_error`, :func:`common.errors.from_status`).
The console's fleet, the status service's link prober, ``convocate-host``, the demo's
smoke test and the benchmarks all use them.
"""

__all__ = ["PING_DEADLINE"]

# s for Ping through a tunnel that is already up (it answers in ms). Past it, a command
# sharing the status service's tunnels (hostctl.shared_tunnel), or the service asking for
# one (shell.status.ask), gives up on that tunnel and the agent is asked another way.
PING_DEADLINE = 2.0
