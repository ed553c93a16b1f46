"""Contains all the data models used in inputs/outputs"""

from .account import Account
from .account_subresource_uris import AccountSubresourceUris
from .list_account_response import ListAccountResponse
from .twilio_error import TwilioError

__all__ = (
    "Account",
    "AccountSubresourceUris",
    "ListAccountResponse",
    "TwilioError",
)
