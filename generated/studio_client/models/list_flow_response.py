from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.flow import Flow
    from ..models.page_meta import PageMeta


T = TypeVar("T", bound="ListFlowResponse")


@_attrs_define
class ListFlowResponse:
    """
    Attributes:
        flows (list[Flow] | Unset):
        meta (PageMeta | Unset): The paging block of every list response. `next_page_url` is absolute, carries the
            `PageToken` and is null on the last page.
    """

    flows: list[Flow] | Unset = UNSET
    meta: PageMeta | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        flows: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.flows, Unset):
            flows = []
            for flows_item_data in self.flows:
                flows_item = flows_item_data.to_dict()
                flows.append(flows_item)

        meta: dict[str, Any] | Unset = UNSET
        if not isinstance(self.meta, Unset):
            meta = self.meta.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if flows is not UNSET:
            field_dict["flows"] = flows
        if meta is not UNSET:
            field_dict["meta"] = meta

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.flow import Flow  # noqa: PLC0415
        from ..models.page_meta import PageMeta  # noqa: PLC0415

        d = dict(src_dict)
        _flows = d.pop("flows", UNSET)
        flows: list[Flow] | Unset = UNSET
        if _flows is not UNSET:
            flows = []
            for flows_item_data in _flows:
                flows_item = Flow.from_dict(flows_item_data)

                flows.append(flows_item)

        _meta = d.pop("meta", UNSET)
        meta: PageMeta | Unset
        if isinstance(_meta, Unset):
            meta = UNSET
        else:
            meta = PageMeta.from_dict(_meta)

        list_flow_response = cls(
            flows=flows,
            meta=meta,
        )

        list_flow_response.additional_properties = d
        return list_flow_response

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
