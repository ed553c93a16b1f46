"""A client library for accessing Twilio Studio v2 (read side)"""

from .client import AuthenticatedClient, Client

__all__ = (
    "AuthenticatedClient",
    "Client",
)
