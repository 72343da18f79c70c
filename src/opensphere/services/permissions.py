"""The one table that says what every RPC requires of its caller.

``Api.call`` reads it before any service code runs; no service checks permissions on its
own. A method missing from the table cannot be called (a test keeps it complete).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """``permission`` on the ``kind`` resource whose id is in request field ``field``."""

    permission: str
    kind: str
    field: str


@dataclass(frozen=True)
class Listing:
    """Results limited to the ``kind`` resources on which the caller holds ``permission``;
    holding it on the parent (named by ``parent_field``) shows all of them."""

    permission: str
    kind: str
    parent_kind: str
    parent_field: str | None = None


@dataclass(frozen=True)
class OnOperation:
    """Read (``cancel=False``) or cancel the operation in ``operation_id``: judged by the
    resource it acts on."""

    cancel: bool


class Public:
    """No credentials needed: endpoint discovery."""


class Authenticated:
    """Any authenticated caller, acting on itself or reading static metadata."""


Rule = Check | Listing | OnOperation | Public | Authenticated
PUBLIC, AUTHENTICATED = Public(), Authenticated()

DS = "yandex.cloud.datasphere.v2"
OS = "opensphere.v1"


def _resource_rules(service: str, kind: str, id_field: str) -> dict[str, Rule]:
    """The access-binding and restriction methods, identical for communities and projects."""
    return {
        f"{service}.ListAccessBindings": Check(f"{kind}.getAccessBindings", kind, "resource_id"),
        f"{service}.SetAccessBindings": Check(f"{kind}.setAccessBindings", kind, "resource_id"),
        f"{service}.UpdateAccessBindings":
            Check(f"{kind}.setAccessBindings", kind, "resource_id"),
        f"{service}.AddResource": Check(f"{kind}.update", kind, id_field),
        f"{service}.RemoveResource": Check(f"{kind}.update", kind, id_field),
        f"{service}.GetRestrictionsMeta": AUTHENTICATED,
        f"{service}.GetRestrictions": Check(f"{kind}.getRestrictions", kind, id_field),
        f"{service}.SetRestrictions": Check(f"{kind}.setRestrictions", kind, id_field),
    }


RULES: dict[str, Rule] = {
    f"{DS}.CommunityService.Create":
        Check("organization.createCommunity", "organization", "organization_id"),
    f"{DS}.CommunityService.Get": Check("community.get", "community", "community_id"),
    f"{DS}.CommunityService.Update": Check("community.update", "community", "community_id"),
    f"{DS}.CommunityService.Delete": Check("community.delete", "community", "community_id"),
    f"{DS}.CommunityService.List":
        Listing("community.get", "community", "organization", "organization_id"),
    **_resource_rules(f"{DS}.CommunityService", "community", "community_id"),
    f"{DS}.ProjectService.Create": Check("community.createProject", "community", "community_id"),
    f"{DS}.ProjectService.Get": Check("project.get", "project", "project_id"),
    f"{DS}.ProjectService.Update": Check("project.update", "project", "project_id"),
    f"{DS}.ProjectService.Delete": Check("project.delete", "project", "project_id"),
    f"{DS}.ProjectService.List": Listing("project.get", "project", "community", "community_id"),
    f"{DS}.ProjectService.Open": Check("project.execute", "project", "project_id"),
    f"{DS}.ProjectService.Execute": Check("project.execute", "project", "project_id"),
    f"{DS}.ProjectService.GetStateVariables": Check("project.get", "project", "project_id"),
    f"{DS}.ProjectService.GetCellOutputs": Check("project.get", "project", "project_id"),
    f"{DS}.ProjectService.GetUnitBalance": Check("project.getBalance", "project", "project_id"),
    f"{DS}.ProjectService.SetUnitBalance": Check("project.setBalance", "project", "project_id"),
    f"{DS}.ProjectService.ResizeDisk": Check("project.setRestrictions", "project", "project_id"),
    f"{DS}.ProjectService.GetDiskInfo": Check("project.get", "project", "project_id"),
    **_resource_rules(f"{DS}.ProjectService", "project", "project_id"),
    "yandex.cloud.operation.OperationService.Get": OnOperation(cancel=False),
    "yandex.cloud.operation.OperationService.Cancel": OnOperation(cancel=True),
    f"{OS}.ExecutionService.Watch": OnOperation(cancel=False),
    "yandex.cloud.endpoint.ApiEndpointService.Get": PUBLIC,
    "yandex.cloud.endpoint.ApiEndpointService.List": PUBLIC,
    f"{OS}.OrganizationService.List": Listing("organization.get", "organization", "system"),
    f"{OS}.OrganizationService.ListAccessBindings":
        Check("organization.getAccessBindings", "organization", "resource_id"),
    f"{OS}.OrganizationService.SetAccessBindings":
        Check("organization.setAccessBindings", "organization", "resource_id"),
    f"{OS}.OrganizationService.UpdateAccessBindings":
        Check("organization.setAccessBindings", "organization", "resource_id"),
    f"{OS}.TokenService.Create": AUTHENTICATED,
    f"{OS}.UsageService.List": Check("project.getBalance", "project", "project_id"),
    **{f"{OS}.SubjectService.{name}": Check("system.manageSubjects", "system", "")
       for name in ("Create", "List", "Delete", "AddGroupMember", "RemoveGroupMember",
                    "IssueToken", "CreateApiKey", "RevokeCredential")},
    f"{OS}.AuditService.List": Check("system.readAudit", "system", ""),
    **{f"{OS}.ProjectFileService.{name}": Check("project.files.read", "project", "project_id")
       for name in ("Download", "List")},
    **{f"{OS}.ProjectFileService.{name}": Check("project.files.write", "project", "project_id")
       for name in ("Upload", "Move", "Delete")},
}

# Operations whose response holds a secret of their creator (Open's single-use IDE session
# token): besides the creator, only administrators of the resource may read them.
CREATOR_ONLY_OPERATIONS = frozenset({"Open project"})

# Cancelling an operation needs, beside seeing its resource, this permission on it
# (or having started the operation).
CANCEL_PERMISSION = {
    "project": "project.execute",
    "community": "community.update",
    "organization": "organization.setAccessBindings",
}
