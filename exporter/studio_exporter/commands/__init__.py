"""The subcommands besides `run`: the demo, `trace`, the container health check."""
