from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.flow_definition_json import FlowDefinitionJson
    from ..models.flow_links import FlowLinks


T = TypeVar("T", bound="Flow")


@_attrs_define
class Flow:
    """A Studio flow.

    Attributes:
        sid (None | str | Unset): The unique string that we created to identify the Flow resource.
        account_sid (None | str | Unset): The SID of the Account that created the Flow resource.
        author_sid (None | str | Unset): The SID of the User that created or last updated the Flow.
        friendly_name (None | str | Unset): The string that you assigned to describe the Flow.
        definition (FlowDefinitionJson | None | Unset): The flow definition: `{"description", "initial_state", "states":
            [{"name", "type", "transitions": [{"event", "next"}], "properties"}], "flags"}`. Free-form JSON here (Twilio
            leaves it untyped); the exporter reads the parts it needs.
        status (None | str | Unset): The status of the Flow. Known values: `draft`, `published`. A plain string, not an
            enum, so that a value Twilio adds does not fail parsing.
        revision (int | Unset): The latest revision number of the Flow's definition. Default: 0.
        commit_message (None | str | Unset): Description of change made in the revision.
        valid (bool | None | Unset): Boolean if the flow definition is valid.
        errors (list[Any] | None | Unset): List of error in the flow definition.
        warnings (list[Any] | None | Unset): List of warnings in the flow definition.
        date_created (datetime.datetime | None | Unset): When the resource was created, ISO 8601 in UTC.
        date_updated (datetime.datetime | None | Unset): When the resource was last updated, ISO 8601 in UTC.
        webhook_url (None | str | Unset):
        url (None | str | Unset): The absolute URL of the resource.
        links (FlowLinks | None | Unset): The URLs of the Flow's nested resources.
    """

    sid: None | str | Unset = UNSET
    account_sid: None | str | Unset = UNSET
    author_sid: None | str | Unset = UNSET
    friendly_name: None | str | Unset = UNSET
    definition: FlowDefinitionJson | None | Unset = UNSET
    status: None | str | Unset = UNSET
    revision: int | Unset = 0
    commit_message: None | str | Unset = UNSET
    valid: bool | None | Unset = UNSET
    errors: list[Any] | None | Unset = UNSET
    warnings: list[Any] | None | Unset = UNSET
    date_created: datetime.datetime | None | Unset = UNSET
    date_updated: datetime.datetime | None | Unset = UNSET
    webhook_url: None | str | Unset = UNSET
    url: None | str | Unset = UNSET
    links: FlowLinks | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.flow_definition_json import FlowDefinitionJson  # noqa: PLC0415
        from ..models.flow_links import FlowLinks  # noqa: PLC0415

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

        author_sid: None | str | Unset
        if isinstance(self.author_sid, Unset):
            author_sid = UNSET
        else:
            author_sid = self.author_sid

        friendly_name: None | str | Unset
        if isinstance(self.friendly_name, Unset):
            friendly_name = UNSET
        else:
            friendly_name = self.friendly_name

        definition: dict[str, Any] | None | Unset
        if isinstance(self.definition, Unset):
            definition = UNSET
        elif isinstance(self.definition, FlowDefinitionJson):
            definition = self.definition.to_dict()
        else:
            definition = self.definition

        status: None | str | Unset
        if isinstance(self.status, Unset):
            status = UNSET
        else:
            status = self.status

        revision = self.revision

        commit_message: None | str | Unset
        if isinstance(self.commit_message, Unset):
            commit_message = UNSET
        else:
            commit_message = self.commit_message

        valid: bool | None | Unset
        if isinstance(self.valid, Unset):
            valid = UNSET
        else:
            valid = self.valid

        errors: list[Any] | None | Unset
        if isinstance(self.errors, Unset):
            errors = UNSET
        elif isinstance(self.errors, list):
            errors = self.errors

        else:
            errors = self.errors

        warnings: list[Any] | None | Unset
        if isinstance(self.warnings, Unset):
            warnings = UNSET
        elif isinstance(self.warnings, list):
            warnings = self.warnings

        else:
            warnings = self.warnings

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

        webhook_url: None | str | Unset
        if isinstance(self.webhook_url, Unset):
            webhook_url = UNSET
        else:
            webhook_url = self.webhook_url

        url: None | str | Unset
        if isinstance(self.url, Unset):
            url = UNSET
        else:
            url = self.url

        links: dict[str, Any] | None | Unset
        if isinstance(self.links, Unset):
            links = UNSET
        elif isinstance(self.links, FlowLinks):
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
        if author_sid is not UNSET:
            field_dict["author_sid"] = author_sid
        if friendly_name is not UNSET:
            field_dict["friendly_name"] = friendly_name
        if definition is not UNSET:
            field_dict["definition"] = definition
        if status is not UNSET:
            field_dict["status"] = status
        if revision is not UNSET:
            field_dict["revision"] = revision
        if commit_message is not UNSET:
            field_dict["commit_message"] = commit_message
        if valid is not UNSET:
            field_dict["valid"] = valid
        if errors is not UNSET:
            field_dict["errors"] = errors
        if warnings is not UNSET:
            field_dict["warnings"] = warnings
        if date_created is not UNSET:
            field_dict["date_created"] = date_created
        if date_updated is not UNSET:
            field_dict["date_updated"] = date_updated
        if webhook_url is not UNSET:
            field_dict["webhook_url"] = webhook_url
        if url is not UNSET:
            field_dict["url"] = url
        if links is not UNSET:
            field_dict["links"] = links

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.flow_definition_json import FlowDefinitionJson  # noqa: PLC0415
        from ..models.flow_links import FlowLinks  # noqa: PLC0415

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

        def _parse_author_sid(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        author_sid = _parse_author_sid(d.pop("author_sid", UNSET))

        def _parse_friendly_name(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        friendly_name = _parse_friendly_name(d.pop("friendly_name", UNSET))

        def _parse_definition(data: object) -> FlowDefinitionJson | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                definition_type_0 = FlowDefinitionJson.from_dict(data)

                return definition_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(FlowDefinitionJson | None | Unset, data)

        definition = _parse_definition(d.pop("definition", UNSET))

        def _parse_status(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        status = _parse_status(d.pop("status", UNSET))

        revision = d.pop("revision", UNSET)

        def _parse_commit_message(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        commit_message = _parse_commit_message(d.pop("commit_message", UNSET))

        def _parse_valid(data: object) -> bool | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | None | Unset, data)

        valid = _parse_valid(d.pop("valid", UNSET))

        def _parse_errors(data: object) -> list[Any] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                errors_type_0 = cast(list[Any], data)

                return errors_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[Any] | None | Unset, data)

        errors = _parse_errors(d.pop("errors", UNSET))

        def _parse_warnings(data: object) -> list[Any] | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, list):
                    raise TypeError()
                warnings_type_0 = cast(list[Any], data)

                return warnings_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(list[Any] | None | Unset, data)

        warnings = _parse_warnings(d.pop("warnings", UNSET))

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

        def _parse_webhook_url(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        webhook_url = _parse_webhook_url(d.pop("webhook_url", UNSET))

        def _parse_url(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        url = _parse_url(d.pop("url", UNSET))

        def _parse_links(data: object) -> FlowLinks | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                links_type_0 = FlowLinks.from_dict(data)

                return links_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(FlowLinks | None | Unset, data)

        links = _parse_links(d.pop("links", UNSET))

        flow = cls(
            sid=sid,
            account_sid=account_sid,
            author_sid=author_sid,
            friendly_name=friendly_name,
            definition=definition,
            status=status,
            revision=revision,
            commit_message=commit_message,
            valid=valid,
            errors=errors,
            warnings=warnings,
            date_created=date_created,
            date_updated=date_updated,
            webhook_url=webhook_url,
            url=url,
            links=links,
        )

        flow.additional_properties = d
        return flow

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
