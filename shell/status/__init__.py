"""The status service: its own process, run by systemd on the shell host.

Agents publish events and heartbeats to it through their SSH tunnels; it keeps the merged
view (:mod:`.view`), pings the agents itself (:mod:`.link_prober`), and says which
direction of a link is broken (:mod:`.link_notices`). :mod:`.server` composes it; its
command line is ``convocate status serve``.
"""
