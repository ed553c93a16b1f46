"""Executions and steps in: Studio's REST API (poll), Event Streams (push), what they share."""
