"""Twilio Studio executions as OpenTelemetry traces and Prometheus metrics."""
