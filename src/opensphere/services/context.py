"""What every RPC implementation receives besides its request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opensphere.iam.audit import Pending
    from opensphere.runtime import Runtime


@dataclass(frozen=True)
class Caller:
    """The authenticated subject making a call."""

    subject_id: str
    subject_type: str


@dataclass(frozen=True)
class CallContext:
    caller: Caller
    runtime: Runtime
    # For List methods: the ids the caller may see, or None when it may see them all.
    visible: set[str] | None = None
    # For calls that change state: their audit record, until someone writes it.
    audit: Pending | None = None
