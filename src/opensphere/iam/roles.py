"""Roles and the permissions they grant.

A permission is ``<resource kind>.<action>``. A role bound on a resource grants its
permissions on that resource and on everything below it (installation → organization →
community → project), so a community role reaches the community's projects.
"""

from __future__ import annotations

PROJECT_VIEWER = frozenset({"project.get", "project.getAccessBindings", "project.files.read"})
PROJECT_DEVELOPER = PROJECT_VIEWER | {"project.execute", "project.files.write"}
PROJECT_EDITOR = PROJECT_DEVELOPER | {"project.update", "project.getBalance",
                                      "project.getRestrictions"}
PROJECT_ADMIN = PROJECT_EDITOR | {"project.delete", "project.setAccessBindings",
                                  "project.setBalance", "project.setRestrictions"}

COMMUNITY_VIEWER = frozenset({"community.get", "community.getAccessBindings"})
COMMUNITY_DEVELOPER = COMMUNITY_VIEWER | {"community.createProject"}
COMMUNITY_EDITOR = COMMUNITY_DEVELOPER | {"community.update", "community.getRestrictions"}
COMMUNITY_ADMIN = COMMUNITY_EDITOR | {"community.delete", "community.setAccessBindings",
                                      "community.setRestrictions"}

ORGANIZATION_VIEWER = frozenset({"organization.get", "organization.getAccessBindings"})
ORGANIZATION_EDITOR = ORGANIZATION_VIEWER | {"organization.createCommunity"}
ORGANIZATION_ADMIN = ORGANIZATION_EDITOR | {"organization.setAccessBindings"}
INSTALLATION_ADMIN = frozenset({"system.manageSubjects", "system.readAudit"})

ROLES: dict[str, frozenset[str]] = {
    # Project roles, also grantable on a community (then they cover all its projects);
    # community.get lets their holders see the community their projects live in.
    "datasphere.community-projects.viewer": PROJECT_VIEWER | {"community.get"},
    "datasphere.community-projects.developer": PROJECT_DEVELOPER | {"community.get"},
    "datasphere.community-projects.editor": PROJECT_EDITOR | {"community.get"},
    "datasphere.community-projects.admin": PROJECT_ADMIN | {"community.get"},
    # Community roles include the project role of the same level.
    "datasphere.communities.viewer": COMMUNITY_VIEWER | PROJECT_VIEWER,
    "datasphere.communities.developer": COMMUNITY_DEVELOPER | PROJECT_DEVELOPER,
    "datasphere.communities.editor": COMMUNITY_EDITOR | PROJECT_EDITOR,
    "datasphere.communities.admin": COMMUNITY_ADMIN | PROJECT_ADMIN,
    # Primitive roles, on any resource.
    "viewer": ORGANIZATION_VIEWER | COMMUNITY_VIEWER | PROJECT_VIEWER,
    "editor": ORGANIZATION_EDITOR | COMMUNITY_EDITOR | PROJECT_EDITOR,
    "admin": ORGANIZATION_ADMIN | COMMUNITY_ADMIN | PROJECT_ADMIN | INSTALLATION_ADMIN,
}

COMMUNITY_CREATOR_ROLE = "datasphere.communities.admin"
PROJECT_CREATOR_ROLE = "datasphere.community-projects.admin"
INSTALLATION_ADMIN_ROLE = "admin"


def roles_granting(permission: str) -> frozenset[str]:
    return frozenset(role for role, perms in ROLES.items() if permission in perms)
