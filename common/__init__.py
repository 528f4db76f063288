"""Code shared by the agent, the shell and hostctl: transport, errors, config, logging."""
