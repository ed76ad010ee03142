"""The CLI commands, one module per area; each is loaded only when it runs."""
