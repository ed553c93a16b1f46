"""The exporter's HTTP port: endpoints, connection limits, TLS and basic auth."""
