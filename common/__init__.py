"""Code shared by the agent, the shell and hostctl; it imports none of them.

Domain types (:mod:`.domain`) and their wire conversion (:mod:`.proto_convert`), the one
agent client (:mod:`.client`), errors, config, defaults, logging and the SSH-wrapped
gRPC transport (:mod:`.ssh_server`, :mod:`.tunnel`, :mod:`.grpc_server`).
"""

from common import asyncssh_import
from common.grpc_options import configure_core

configure_core()   # before anything imports grpc: gRPC reads its core settings on import
asyncssh_import.install()   # before anything imports asyncssh: what it loads on import (issue 13)
