"""What the console uses to reach the agents: the router and its caches.

Runs inside the console process. :mod:`.router` implements the :class:`~.model.RouterAPI`
the console reads; :mod:`.agent_fleet` owns one :mod:`common.client` agent client, watch
and session cache per registered agent; :mod:`.orphans` finds pre-v2 sessions, :mod:`.dns`
writes the dnsmasq hosts file and :mod:`.status_client` reads the status service's merged
view. Everything here works on :mod:`common.domain` types; only the status client speaks pb2.
"""
