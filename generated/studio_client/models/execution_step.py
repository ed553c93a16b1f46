from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.execution_step_context_json import ExecutionStepContextJson
    from ..models.execution_step_links import ExecutionStepLinks


T = TypeVar("T", bound="ExecutionStep")


@_attrs_define
class ExecutionStep:
    """One transition of an execution: the widget `transitioned_from` finished with the event `name` and the execution
    moved on to `transitioned_to` (`Ended` when it finished).

        Attributes:
            sid (None | str | Unset): The unique string that we created to identify the ExecutionStep resource.
            account_sid (None | str | Unset): The SID of the Account that created the ExecutionStep resource.
            flow_sid (None | str | Unset): The SID of the Flow.
            execution_sid (None | str | Unset): The SID of the Step's Execution resource.
            parent_step_sid (None | str | Unset): The SID of the parent Step (set for the steps of a subflow).
            name (None | str | Unset): The event that caused the Flow to transition to the Step.
            context (ExecutionStepContextJson | None | Unset): The current state of the Flow's Execution. Personal data.
                Free-form JSON object here (Twilio leaves it untyped).
            transitioned_from (None | str | Unset): The Widget that preceded the Widget for the Step.
            transitioned_to (None | str | Unset): The Widget that will follow the Widget for the Step.
            type_ (None | str | Unset): The type of the widget that was executed.
            date_created (datetime.datetime | None | Unset): When the resource was created, ISO 8601 in UTC (whole seconds).
            date_updated (datetime.datetime | None | Unset): When the resource was last updated, ISO 8601 in UTC. Often
                null.
            url (None | str | Unset): The absolute URL of the resource.
            links (ExecutionStepLinks | None | Unset): The URLs of related resources.
    """

    sid: None | str | Unset = UNSET
    account_sid: None | str | Unset = UNSET
    flow_sid: None | str | Unset = UNSET
    execution_sid: None | str | Unset = UNSET
    parent_step_sid: None | str | Unset = UNSET
    name: None | str | Unset = UNSET
    context: ExecutionStepContextJson | None | Unset = UNSET
    transitioned_from: None | str | Unset = UNSET
    transitioned_to: None | str | Unset = UNSET
    type_: None | str | Unset = UNSET
    date_created: datetime.datetime | None | Unset = UNSET
    date_updated: datetime.datetime | None | Unset = UNSET
    url: None | str | Unset = UNSET
    links: ExecutionStepLinks | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.execution_step_context_json import ExecutionStepContextJson  # noqa: PLC0415
        from ..models.execution_step_links import ExecutionStepLinks  # noqa: PLC0415

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

        execution_sid: None | str | Unset
        if isinstance(self.execution_sid, Unset):
            execution_sid = UNSET
        else:
            execution_sid = self.execution_sid

        parent_step_sid: None | str | Unset
        if isinstance(self.parent_step_sid, Unset):
            parent_step_sid = UNSET
        else:
            parent_step_sid = self.parent_step_sid

        name: None | str | Unset
        if isinstance(self.name, Unset):
            name = UNSET
        else:
            name = self.name

        context: dict[str, Any] | None | Unset
        if isinstance(self.context, Unset):
            context = UNSET
        elif isinstance(self.context, ExecutionStepContextJson):
            context = self.context.to_dict()
        else:
            context = self.context

        transitioned_from: None | str | Unset
        if isinstance(self.transitioned_from, Unset):
            transitioned_from = UNSET
        else:
            transitioned_from = self.transitioned_from

        transitioned_to: None | str | Unset
        if isinstance(self.transitioned_to, Unset):
            transitioned_to = UNSET
        else:
            transitioned_to = self.transitioned_to

        type_: None | str | Unset
        if isinstance(self.type_, Unset):
            type_ = UNSET
        else:
            type_ = self.type_

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

        url: None | str | Unset
        if isinstance(self.url, Unset):
            url = UNSET
        else:
            url = self.url

        links: dict[str, Any] | None | Unset
        if isinstance(self.links, Unset):
            links = UNSET
        elif isinstance(self.links, ExecutionStepLinks):
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
        if execution_sid is not UNSET:
            field_dict["execution_sid"] = execution_sid
        if parent_step_sid is not UNSET:
            field_dict["parent_step_sid"] = parent_step_sid
        if name is not UNSET:
            field_dict["name"] = name
        if context is not UNSET:
            field_dict["context"] = context
        if transitioned_from is not UNSET:
            field_dict["transitioned_from"] = transitioned_from
        if transitioned_to is not UNSET:
            field_dict["transitioned_to"] = transitioned_to
        if type_ is not UNSET:
            field_dict["type"] = type_
        if date_created is not UNSET:
            field_dict["date_created"] = date_created
        if date_updated is not UNSET:
            field_dict["date_updated"] = date_updated
        if url is not UNSET:
            field_dict["url"] = url
        if links is not UNSET:
            field_dict["links"] = links

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.execution_step_context_json import ExecutionStepContextJson  # noqa: PLC0415
        from ..models.execution_step_links import ExecutionStepLinks  # noqa: PLC0415

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

        def _parse_execution_sid(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        execution_sid = _parse_execution_sid(d.pop("execution_sid", UNSET))

        def _parse_parent_step_sid(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        parent_step_sid = _parse_parent_step_sid(d.pop("parent_step_sid", UNSET))

        def _parse_name(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        name = _parse_name(d.pop("name", UNSET))

        def _parse_context(data: object) -> ExecutionStepContextJson | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                context_type_0 = ExecutionStepContextJson.from_dict(data)

                return context_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ExecutionStepContextJson | None | Unset, data)

        context = _parse_context(d.pop("context", UNSET))

        def _parse_transitioned_from(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        transitioned_from = _parse_transitioned_from(d.pop("transitioned_from", UNSET))

        def _parse_transitioned_to(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        transitioned_to = _parse_transitioned_to(d.pop("transitioned_to", UNSET))

        def _parse_type_(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        type_ = _parse_type_(d.pop("type", UNSET))

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

        def _parse_url(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        url = _parse_url(d.pop("url", UNSET))

        def _parse_links(data: object) -> ExecutionStepLinks | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                links_type_0 = ExecutionStepLinks.from_dict(data)

                return links_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ExecutionStepLinks | None | Unset, data)

        links = _parse_links(d.pop("links", UNSET))

        execution_step = cls(
            sid=sid,
            account_sid=account_sid,
            flow_sid=flow_sid,
            execution_sid=execution_sid,
            parent_step_sid=parent_step_sid,
            name=name,
            context=context,
            transitioned_from=transitioned_from,
            transitioned_to=transitioned_to,
            type_=type_,
            date_created=date_created,
            date_updated=date_updated,
            url=url,
            links=links,
        )

        execution_step.additional_properties = d
        return execution_step

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
