"""Shared pieces of the community and project services: updates by field mask, listing."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from opensphere.services.errors import invalid_argument


def apply_update(current: Message, patch: Message, mask: field_mask_pb2.FieldMask,
                 updatable: Iterable[str]) -> None:
    """Copy the fields named by ``mask`` from ``patch`` into ``current``.

    An empty mask means every field set in ``patch``: a PATCH with a JSON body changes
    what it names. Paths may go into sub-messages (``settings.default_dedicated_spec``).
    """
    allowed = set(updatable)
    paths = list(mask.paths) or [f.name for f, _ in patch.ListFields() if f.name in allowed]
    for path in paths:
        if path.split(".", 1)[0] not in allowed:
            raise invalid_argument("update_mask", f"{path!r} cannot be updated")
    effective = field_mask_pb2.FieldMask(paths=paths)
    if not effective.IsValidForDescriptor(current.DESCRIPTOR):
        raise invalid_argument("update_mask", f"unknown field in {', '.join(paths)}")
    effective.MergeMessage(patch, current, replace_message_field=True,
                           replace_repeated_field=True)
