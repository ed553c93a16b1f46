"""Twilio's published spec against the project's: the drift report and conformance."""
