"""convocate-agent: one host's sessions on the local Docker Engine, served over gRPC."""
