from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.account_subresource_uris import AccountSubresourceUris


T = TypeVar("T", bound="Account")


@_attrs_define
class Account:
    """A Twilio account (main account or subaccount).

    Attributes:
        auth_token (None | str | Unset): The authorization token for this account. A secret: the exporter holds it in
            memory only and never logs, exports or stores it.
        date_created (None | str | Unset): The date that this account was created, in GMT in RFC 2822 format
        date_updated (None | str | Unset): The date that this account was last updated, in GMT in RFC 2822 format.
        friendly_name (None | str | Unset): A human readable description of this account, up to 64 characters long.
        owner_account_sid (None | str | Unset): The SID of the parent of this account. The owner of a main account is
            its own SID.
        sid (None | str | Unset): A 34 character string that uniquely identifies this resource.
        status (None | str | Unset): The status of this account. Known values: `active`, `suspended`, `closed`. A plain
            string, not an enum, so that a value Twilio adds does not fail parsing.
        subresource_uris (AccountSubresourceUris | None | Unset): A Map of various subresources available for the given
            Account Instance
        type_ (None | str | Unset): The type of this account, `Trial` or `Full`. A plain string, not an enum.
        uri (None | str | Unset): The URI for this resource, relative to `https://api.twilio.com`
    """

    auth_token: None | str | Unset = UNSET
    date_created: None | str | Unset = UNSET
    date_updated: None | str | Unset = UNSET
    friendly_name: None | str | Unset = UNSET
    owner_account_sid: None | str | Unset = UNSET
    sid: None | str | Unset = UNSET
    status: None | str | Unset = UNSET
    subresource_uris: AccountSubresourceUris | None | Unset = UNSET
    type_: None | str | Unset = UNSET
    uri: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.account_subresource_uris import AccountSubresourceUris  # noqa: PLC0415

        auth_token: None | str | Unset
        if isinstance(self.auth_token, Unset):
            auth_token = UNSET
        else:
            auth_token = self.auth_token

        date_created: None | str | Unset
        if isinstance(self.date_created, Unset):
            date_created = UNSET
        else:
            date_created = self.date_created

        date_updated: None | str | Unset
        if isinstance(self.date_updated, Unset):
            date_updated = UNSET
        else:
            date_updated = self.date_updated

        friendly_name: None | str | Unset
        if isinstance(self.friendly_name, Unset):
            friendly_name = UNSET
        else:
            friendly_name = self.friendly_name

        owner_account_sid: None | str | Unset
        if isinstance(self.owner_account_sid, Unset):
            owner_account_sid = UNSET
        else:
            owner_account_sid = self.owner_account_sid

        sid: None | str | Unset
        if isinstance(self.sid, Unset):
            sid = UNSET
        else:
            sid = self.sid

        status: None | str | Unset
        if isinstance(self.status, Unset):
            status = UNSET
        else:
            status = self.status

        subresource_uris: dict[str, Any] | None | Unset
        if isinstance(self.subresource_uris, Unset):
            subresource_uris = UNSET
        elif isinstance(self.subresource_uris, AccountSubresourceUris):
            subresource_uris = self.subresource_uris.to_dict()
        else:
            subresource_uris = self.subresource_uris

        type_: None | str | Unset
        if isinstance(self.type_, Unset):
            type_ = UNSET
        else:
            type_ = self.type_

        uri: None | str | Unset
        if isinstance(self.uri, Unset):
            uri = UNSET
        else:
            uri = self.uri

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if auth_token is not UNSET:
            field_dict["auth_token"] = auth_token
        if date_created is not UNSET:
            field_dict["date_created"] = date_created
        if date_updated is not UNSET:
            field_dict["date_updated"] = date_updated
        if friendly_name is not UNSET:
            field_dict["friendly_name"] = friendly_name
        if owner_account_sid is not UNSET:
            field_dict["owner_account_sid"] = owner_account_sid
        if sid is not UNSET:
            field_dict["sid"] = sid
        if status is not UNSET:
            field_dict["status"] = status
        if subresource_uris is not UNSET:
            field_dict["subresource_uris"] = subresource_uris
        if type_ is not UNSET:
            field_dict["type"] = type_
        if uri is not UNSET:
            field_dict["uri"] = uri

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.account_subresource_uris import AccountSubresourceUris  # noqa: PLC0415

        d = dict(src_dict)

        def _parse_auth_token(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        auth_token = _parse_auth_token(d.pop("auth_token", UNSET))

        def _parse_date_created(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        date_created = _parse_date_created(d.pop("date_created", UNSET))

        def _parse_date_updated(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        date_updated = _parse_date_updated(d.pop("date_updated", UNSET))

        def _parse_friendly_name(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        friendly_name = _parse_friendly_name(d.pop("friendly_name", UNSET))

        def _parse_owner_account_sid(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        owner_account_sid = _parse_owner_account_sid(d.pop("owner_account_sid", UNSET))

        def _parse_sid(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        sid = _parse_sid(d.pop("sid", UNSET))

        def _parse_status(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        status = _parse_status(d.pop("status", UNSET))

        def _parse_subresource_uris(data: object) -> AccountSubresourceUris | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                subresource_uris_type_0 = AccountSubresourceUris.from_dict(data)

                return subresource_uris_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(AccountSubresourceUris | None | Unset, data)

        subresource_uris = _parse_subresource_uris(d.pop("subresource_uris", UNSET))

        def _parse_type_(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        type_ = _parse_type_(d.pop("type", UNSET))

        def _parse_uri(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        uri = _parse_uri(d.pop("uri", UNSET))

        account = cls(
            auth_token=auth_token,
            date_created=date_created,
            date_updated=date_updated,
            friendly_name=friendly_name,
            owner_account_sid=owner_account_sid,
            sid=sid,
            status=status,
            subresource_uris=subresource_uris,
            type_=type_,
            uri=uri,
        )

        account.additional_properties = d
        return account

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
