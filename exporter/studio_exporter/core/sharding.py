"""Which replica follows which work unit (account, flow) when replicas split the work by hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


class UnitOwner(Protocol):
    """Which work units (account, flow) this replica follows: a fixed shard, or leases."""

    @property
    def splits(self) -> bool:
        """True when other replicas follow part of the work."""
        ...

    def owns(self, account_sid: str, flow_sid: str) -> bool: ...


def shard_of(account_sid: str, flow_sid: str, total_shards: int) -> int:
    """The shard, in ``0..total_shards-1``, that follows the flow ``flow_sid`` of ``account_sid``.

    The first 8 bytes of the SHA-256 of ``"AC…/FW…"``, read as a big-endian integer, modulo
    ``total_shards``. It depends on nothing but the two SIDs: not on Python's ``hash()``
    (salted per process), the Python version, the machine or the order flows are listed in,
    so replicas that never talk to each other agree on it, and so does a later release.
    """
    if total_shards < 1:
        raise ValueError(f"total_shards must be at least 1, not {total_shards}")
    digest = hashlib.sha256(f"{account_sid}/{flow_sid}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") % total_shards


@dataclass(frozen=True, slots=True)
class Shard:
    """This replica's part of the work: shard ``index`` of ``total`` (``--shard``,
    ``--total-shards``). The default, 0 of 1, follows everything."""

    index: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.total < 1 or not 0 <= self.index < self.total:
            raise ValueError(f"shard {self.index} of {self.total}: give 0 <= shard < total >= 1")

    @property
    def splits(self) -> bool:
        """True when other replicas follow part of the work."""
        return self.total > 1

    def owns(self, account_sid: str, flow_sid: str) -> bool:
        """True when this replica follows the flow ``flow_sid`` of ``account_sid``."""
        return not self.splits or shard_of(account_sid, flow_sid, self.total) == self.index


#: One replica following every unit.
NO_SHARDING = Shard()
