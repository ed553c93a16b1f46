"""Where exports go: Prometheus metrics (Studio's and the exporter's own) and spans."""
