from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.execution_context_context_json import ExecutionContextContextJson


T = TypeVar("T", bound="ExecutionContext")


@_attrs_define
class ExecutionContext:
    """The most recent context of an execution.

    Attributes:
        account_sid (None | str | Unset): The SID of the Account that created the ExecutionContext resource.
        context (ExecutionContextContextJson | None | Unset): The current state of the Flow's Execution. Personal data.
            Free-form JSON object here (Twilio leaves it untyped).
        flow_sid (None | str | Unset): The SID of the Flow.
        execution_sid (None | str | Unset): The SID of the context's Execution resource.
        url (None | str | Unset): The absolute URL of the resource.
    """

    account_sid: None | str | Unset = UNSET
    context: ExecutionContextContextJson | None | Unset = UNSET
    flow_sid: None | str | Unset = UNSET
    execution_sid: None | str | Unset = UNSET
    url: None | str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.execution_context_context_json import ExecutionContextContextJson  # noqa: PLC0415

        account_sid: None | str | Unset
        if isinstance(self.account_sid, Unset):
            account_sid = UNSET
        else:
            account_sid = self.account_sid

        context: dict[str, Any] | None | Unset
        if isinstance(self.context, Unset):
            context = UNSET
        elif isinstance(self.context, ExecutionContextContextJson):
            context = self.context.to_dict()
        else:
            context = self.context

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

        url: None | str | Unset
        if isinstance(self.url, Unset):
            url = UNSET
        else:
            url = self.url

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if account_sid is not UNSET:
            field_dict["account_sid"] = account_sid
        if context is not UNSET:
            field_dict["context"] = context
        if flow_sid is not UNSET:
            field_dict["flow_sid"] = flow_sid
        if execution_sid is not UNSET:
            field_dict["execution_sid"] = execution_sid
        if url is not UNSET:
            field_dict["url"] = url

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.execution_context_context_json import ExecutionContextContextJson  # noqa: PLC0415

        d = dict(src_dict)

        def _parse_account_sid(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        account_sid = _parse_account_sid(d.pop("account_sid", UNSET))

        def _parse_context(data: object) -> ExecutionContextContextJson | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                context_type_0 = ExecutionContextContextJson.from_dict(data)

                return context_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(ExecutionContextContextJson | None | Unset, data)

        context = _parse_context(d.pop("context", UNSET))

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

        def _parse_url(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        url = _parse_url(d.pop("url", UNSET))

        execution_context = cls(
            account_sid=account_sid,
            context=context,
            flow_sid=flow_sid,
            execution_sid=execution_sid,
            url=url,
        )

        execution_context.additional_properties = d
        return execution_context

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
