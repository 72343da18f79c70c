"""Tables. Every change here needs a migration in ``store/migrations/versions``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(50), primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Subject(Base):
    """Someone who can call the API: userAccount, serviceAccount, group or federatedUser."""

    __tablename__ = "subjects"

    id: Mapped[str] = mapped_column(String(50), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[str] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"),
                                          primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"),
                                            primary_key=True, index=True)


class AccessBinding(Base):
    """``role_id`` granted to a subject on a resource (and everything under it)."""

    __tablename__ = "access_bindings"
    __table_args__ = (Index("ix_access_bindings_subject", "subject_id"),)

    resource_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    role_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditRecord(Base):
    """One mutating or denied call: who, what, on which resource, and how it ended."""

    __tablename__ = "audit_log"

    id: Mapped[str] = mapped_column(String(50), primary_key=True)
    time: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    subject_id: Mapped[str] = mapped_column(String(100), default="", index=True)
    method: Mapped[str] = mapped_column(String(128))
    resource_id: Mapped[str] = mapped_column(String(100), default="")
    result: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(512), default="")


class IamState(Base):
    """One row: ``version`` grows with every change access decisions depend on (bumped by
    triggers, see migration 0006)."""

    __tablename__ = "iam_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class Token(Base):
    """A bearer credential. Only the SHA-256 of the secret is kept."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(50), primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="bearer")  # bearer | api_key
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Community(Base):
    __tablename__ = "communities"
    __table_args__ = (Index("ix_communities_org_id", "organization_id", "id"),)

    id: Mapped[str] = mapped_column(String(50), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(63), default="")
    description: Mapped[str] = mapped_column(String(256), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    billing_account_id: Mapped[str] = mapped_column(String(50), default="")
    created_by_id: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (Index("ix_projects_community_id", "community_id", "id"),)

    id: Mapped[str] = mapped_column(String(50), primary_key=True)
    community_id: Mapped[str] = mapped_column(ForeignKey("communities.id"))
    name: Mapped[str] = mapped_column(String(63), default="")
    description: Mapped[str] = mapped_column(String(256), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    limits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by_id: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Operation(Base):
    """A long-running operation; metadata/response/error hold serialized protobufs."""

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(50), primary_key=True)
    description: Mapped[str] = mapped_column(String(256), default="")
    resource_type: Mapped[str] = mapped_column(String(32), default="")
    resource_id: Mapped[str] = mapped_column(String(50), default="", index=True)
    created_by: Mapped[str] = mapped_column(String(50), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_pb: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    response_pb: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    error_pb: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class IdeCredential(Base):
    """An IDE gateway secret, kept as SHA-256 so that any API replica can check it.

    ``entry``: the single-use session token of ``ProjectService.Open``; ``cookie``: the
    browser's session with one project's IDE, its expiry pushed forward while it is used.
    """

    __tablename__ = "ide_credentials"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # entry | cookie
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Checkpoint(Base):
    """What one Execute run left behind: the executed notebook and its variables."""

    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_project_notebook", "project_id", "notebook_id",
                            "created_at"),)

    id: Mapped[str] = mapped_column(String(50), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    notebook_id: Mapped[str] = mapped_column(String(200))
    operation_id: Mapped[str] = mapped_column(String(50), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16))  # OK | ERROR | ABORTED
    notebook: Mapped[str] = mapped_column(Text)  # nbformat v4 JSON, outputs included
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ProjectBudget(Base):
    """A project's unit balance (NULL: unlimited) and storage size (NULL: the default)."""

    __tablename__ = "project_budgets"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"),
                                            primary_key=True)
    unit_balance: Mapped[int | None] = mapped_column(BigInteger, default=None)
    disk_size_gb: Mapped[int | None] = mapped_column(BigInteger, default=None)


class Usage(Base):
    """What one run consumed, charged while it runs, so a crash loses at most a second."""

    __tablename__ = "usage"
    __table_args__ = (Index("ix_usage_project_updated", "project_id", "updated_at"),)

    operation_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    subject_id: Mapped[str] = mapped_column(String(100))
    spec: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    units: Mapped[int] = mapped_column(BigInteger, default=0)
    finished: Mapped[bool] = mapped_column(Boolean, default=False)


class RestrictionValue(Base):
    """One named restriction of a community or a project, as a list of values."""

    __tablename__ = "restrictions"

    resource_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    values: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"values": [...]}
