"""A client library for accessing Twilio API v2010 (accounts, read side)"""

from .client import AuthenticatedClient, Client

__all__ = (
    "AuthenticatedClient",
    "Client",
)
