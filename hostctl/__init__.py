"""convocate-host: provisioning, peering, image transfer and migration (typer CLI)."""
