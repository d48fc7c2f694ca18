"""bubble-cli subcommands, one module each (see bubble_desktop/cli.py)."""
