"""Grafana dashboards as code, and the PromQL they run, for the tests to import."""
