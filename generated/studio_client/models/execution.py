from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.execution_context_json import ExecutionContextJson
    from ..models.execution_links import ExecutionLinks


T = TypeVar("T", bound="Execution")


@_attrs_define
class Execution:
    """One run of a flow.

    Attributes:
        sid (None | str | Unset): The unique string that we created to identify the Execution resource.
        account_sid (None | str | Unset): The SID of the Account that created the Execution resource.
        flow_sid (None | str | Unset): The SID of the Flow.
        contact_channel_address (None | str | Unset): The phone number, SIP address or Client identifier that triggered
            the Execution. Personal data: never export it raw.
        contact_sid (None | str | Unset): The SID of the Contact.
        flow_version (int | None | Unset): The Flow version number at the time of Execution creation.
        context (ExecutionContextJson | None | Unset): The current state of the Flow's Execution. Personal data. Free-
            form JSON object here (Twilio leaves it untyped).
        status (None | str | Unset): The status of the Execution. Known values: `active`, `ended`. A plain string, not
            an enum, so that a value Twilio adds does not fail parsing.
        date_created (datetime.datetime | None | Unset): When the resource was created, ISO 8601 in UTC.
        date_updated (datetime.datetime | None | Unset): When the resource was last updated, ISO 8601 in UTC.
        initiated_by (None | str | Unset): The SID or identifier that triggered this Execution (a Call SID, a Message
            SID, ...).
        url (None | str | Unset): The absolute URL of the resource.
        links (ExecutionLinks | None | Unset): The URLs of nested resources.
    """

    sid: None | str | Unset = UNSET
    account_sid: None | str | Unset = UNSET
    flow_sid: None | str | Unset = UNSET
    contact_channel_address: None | str | Unset = UNSET
    contact_sid: None | str | Unset = UNSET
    flow_version: int | None | Unset = UNSET
    context: ExecutionContextJson | None | Unset = UNSET
    status: None | str | Unset = UNSET
    date_created: datetime.datetime | None | Unset = UNSET
    date_updated: datetime.datetime | None | Unset = UNSET
    initiated_by: None | str | Unset = UNSET
    url: None | str | Unset = UNSET
    links: ExecutionLinks | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.execution_context_json import ExecutionContextJson  # noqa: PLC0415
        from ..models.execution_links import ExecutionLinks  # noqa: PLC0415

        sid: None | str | Unset
        if isinstance(self.sid, Unset):
            sid = UNSET
        else:
            sid = self.sid

        account_sid: None | str | Unset
        if isinstance(self.account_sid, Unset):
            account_sid = UNSET
        else:
            account_sid = self.account_sid

        flow_sid: None | str | Unset
        if isinstance(self.flow_sid, Unset):
            flow_sid = UNSET
        else:
            flow_sid = self.flow_sid

        contact_channel_address: None | str | Unset
        if isinstance(self.contact_channel_address, Unset):
            contact_channel_address = UNSET
        else:
            contact_channel_address = self.contact_channel_address

        contact_sid: None | str | Unset
        if isinstance(self.contact_sid, Unset):
            contact_sid = UNSET
        else:
            contact_sid = self.contact_sid

        flow_version: int | None | Unset
        if isinstance(self.flow_version, Unset):
            flow_version = UNSET
        else:
            flow_version = self.flow_version

        context: dict[str, Any] | None | Unset
        if isinstance(self.context, Unset):
            context = UNSET
        elif isinstance(self.context, ExecutionContextJson):
            context = self.context.to_dict()
        else:
            context = self.context

        status: None | str | Unset
        if isinstance(self.status, Unset):
            status = UNSET
        else:
            status = self.status

        date_created: None | str | Unset
        if isinstance(self.date_created, Unset):
            date_created = UNSET
        elif isinstance(self.date_created, datetime.datetime):
            date_created = self.date_created.isoformat()
        else:
            date_created = self.date_created

        date_updated: None | str | Unset
        if isinstance(self.date_updated, Unset):
            date_updated = UNSET
        elif isinstance(self.date_updated, datetime.datetime):
            date_updated = self.date_updated.isoformat()
        else:
            date_updated = self.date_updated

        initiated_by: None | str | Unset
        if isinstance(self.initiated_by, Unset):
            initiated_by = UNSET
        else:
            initiated_by = self.initiated_by

        url: None | str | Unset
        if isinstance(self.url, Unset):
            url = UNSET
        else:
            url = self.url

        links: dict[str, Any] | None | Unset
        if isinstance(self.links, Unset):
            links = UNSET
        elif isinstance(self.links, ExecutionLinks):
            links = self.links.to_dict()
        else:
            links = self.links

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if sid is not UNSET:
            field_dict["sid"] = sid
        if account_sid is not UNSET:
            field_dict["account_sid"] = account_sid
        if flow_sid is not UNSET:
            field_dict["flow_sid"] = flow_sid
        if contact_channel_address is not UNSET:
            field_dict["contact_channel_address"] = contact_channel_address
        if contact_sid is not UNSET:
            field_dict["contact_sid"] = contact_sid
        if flow_version is not UNSET:
            field_dict["flow_version"] = flow_version
        if context is not UNSET:
            field_dict["context"] = context
        if status is not UNSET:
            field_dict["status"] = status
        if date_created is not UNSET:
            field_dict["date_created"] = date_created
        if date_updated is not UNSET:
            field_dict["date_updated"] = date_updated
        if initiated_by is not UNSET:
            field_dict["initiated_by"] = initiated_by
        if url is not UNSET:
            field_dict["url"] = url
        if links is not UNSET:
            field_dict["links"] = links

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.execution_context_json import ExecutionContextJson  # noqa: PLC0415
        from ..models.execution_links import ExecutionLinks  # noqa: PLC0415

        d = dict(src_dict)

        def _parse_sid(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        sid = _parse_sid(d.pop("sid", UNSET))

        def _parse_account_sid(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        account_sid = _parse_account_sid(d.pop("account_sid", UNSET))

        def _parse_flow_sid(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        flow_sid = _parse_flow_sid(d.pop("flow_sid", UNSET))

        def _parse_contact_channel_address(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        contact_channel_address = _parse_contact_channel_address(
            d.pop("contact_channel_address", UNSET)
        )

        def _parse_contact_sid(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        contact_sid = _parse_contact_sid(d.pop("contact_sid", UNSET))

        def _parse_flow_version(data: object) -> int | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(int | None | Unset, data)

        flow_version = _parse_flow_version(d.pop("flow_version", UNSET))

        def _parse_context(data: object) -> ExecutionContextJson | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                context_type_0 = ExecutionContextJson.from_dict(data)

                return context_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ExecutionContextJson | None | Unset, data)

        context = _parse_context(d.pop("context", UNSET))

        def _parse_status(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        status = _parse_status(d.pop("status", UNSET))

        def _parse_date_created(data: object) -> datetime.datetime | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                date_created_type_0 = datetime.datetime.fromisoformat(data)

                return date_created_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None | Unset, data)

        date_created = _parse_date_created(d.pop("date_created", UNSET))

        def _parse_date_updated(data: object) -> datetime.datetime | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                date_updated_type_0 = datetime.datetime.fromisoformat(data)

                return date_updated_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None | Unset, data)

        date_updated = _parse_date_updated(d.pop("date_updated", UNSET))

        def _parse_initiated_by(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        initiated_by = _parse_initiated_by(d.pop("initiated_by", UNSET))

        def _parse_url(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        url = _parse_url(d.pop("url", UNSET))

        def _parse_links(data: object) -> ExecutionLinks | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                links_type_0 = ExecutionLinks.from_dict(data)

                return links_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ExecutionLinks | None | Unset, data)

        links = _parse_links(d.pop("links", UNSET))

        execution = cls(
            sid=sid,
            account_sid=account_sid,
            flow_sid=flow_sid,
            contact_channel_address=contact_channel_address,
            contact_sid=contact_sid,
            flow_version=flow_version,
            context=context,
            status=status,
            date_created=date_created,
            date_updated=date_updated,
            initiated_by=initiated_by,
            url=url,
            links=links,
        )

        execution.additional_properties = d
        return execution

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
