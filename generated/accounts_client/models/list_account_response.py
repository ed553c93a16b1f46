from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.account import Account


T = TypeVar("T", bound="ListAccountResponse")


@_attrs_define
class ListAccountResponse:
    """One page of accounts. Paging is v2010's: `next_page_uri` is relative to the API's base URL, carries the `PageToken`
    and is null on the last page.

        Attributes:
            accounts (list[Account] | Unset):
            end (int | Unset):
            first_page_uri (str | Unset):
            next_page_uri (None | str | Unset):
            page (int | Unset):
            page_size (int | Unset):
            previous_page_uri (None | str | Unset):
            start (int | Unset):
            uri (str | Unset):
    """

    accounts: list[Account] | Unset = UNSET
    end: int | Unset = UNSET
    first_page_uri: str | Unset = UNSET
    next_page_uri: None | str | Unset = UNSET
    page: int | Unset = UNSET
    page_size: int | Unset = UNSET
    previous_page_uri: None | str | Unset = UNSET
    start: int | Unset = UNSET
    uri: str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        accounts: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.accounts, Unset):
            accounts = []
            for accounts_item_data in self.accounts:
                accounts_item = accounts_item_data.to_dict()
                accounts.append(accounts_item)

        end = self.end

        first_page_uri = self.first_page_uri

        next_page_uri: None | str | Unset
        if isinstance(self.next_page_uri, Unset):
            next_page_uri = UNSET
        else:
            next_page_uri = self.next_page_uri

        page = self.page

        page_size = self.page_size

        previous_page_uri: None | str | Unset
        if isinstance(self.previous_page_uri, Unset):
            previous_page_uri = UNSET
        else:
            previous_page_uri = self.previous_page_uri

        start = self.start

        uri = self.uri

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if accounts is not UNSET:
            field_dict["accounts"] = accounts
        if end is not UNSET:
            field_dict["end"] = end
        if first_page_uri is not UNSET:
            field_dict["first_page_uri"] = first_page_uri
        if next_page_uri is not UNSET:
            field_dict["next_page_uri"] = next_page_uri
        if page is not UNSET:
            field_dict["page"] = page
        if page_size is not UNSET:
            field_dict["page_size"] = page_size
        if previous_page_uri is not UNSET:
            field_dict["previous_page_uri"] = previous_page_uri
        if start is not UNSET:
            field_dict["start"] = start
        if uri is not UNSET:
            field_dict["uri"] = uri

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.account import Account  # noqa: PLC0415

        d = dict(src_dict)
        _accounts = d.pop("accounts", UNSET)
        accounts: list[Account] | Unset = UNSET
        if _accounts is not UNSET:
            accounts = []
            for accounts_item_data in _accounts:
                accounts_item = Account.from_dict(accounts_item_data)

                accounts.append(accounts_item)

        end = d.pop("end", UNSET)

        first_page_uri = d.pop("first_page_uri", UNSET)

        def _parse_next_page_uri(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        next_page_uri = _parse_next_page_uri(d.pop("next_page_uri", UNSET))

        page = d.pop("page", UNSET)

        page_size = d.pop("page_size", UNSET)

        def _parse_previous_page_uri(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        previous_page_uri = _parse_previous_page_uri(d.pop("previous_page_uri", UNSET))

        start = d.pop("start", UNSET)

        uri = d.pop("uri", UNSET)

        list_account_response = cls(
            accounts=accounts,
            end=end,
            first_page_uri=first_page_uri,
            next_page_uri=next_page_uri,
            page=page,
            page_size=page_size,
            previous_page_uri=previous_page_uri,
            start=start,
            uri=uri,
        )

        list_account_response.additional_properties = d
        return list_account_response

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
