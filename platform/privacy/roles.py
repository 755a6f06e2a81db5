"""The privacy officers' group and exactly the permissions it needs, kept in one place.

The group is synced after every `migrate` and after every `flush` (both send
post_migrate), so it exists with the right permissions on a fresh database, after
an upgrade that adds a queue, and in tests that flush the database.
"""

from __future__ import annotations

OFFICER_GROUP = "Privacy officers"
OFFICER_PERMISSIONS = (
    "view_processingactivity",
    "add_processingactivity",
    "change_processingactivity",
    "view_consentrecord",
    "view_consentstate",
    "view_auditentry",
    "view_datasubjectrequest",
    "change_datasubjectrequest",
    "view_riskflag",
    "change_riskflag",
    "view_counterstatement",
    "change_counterstatement",
    "view_suppression",
    "view_privacybudget",
    "add_privacybudget",
    "change_privacybudget",
    "view_budgetperiod",
    "view_releaseledger",
    "view_messagingpolicy",
    "add_messagingpolicy",
    "change_messagingpolicy",
)
# Sign-in lockouts (django-axes): officers see them and unlock (privacy.logins).
OFFICER_LOGIN_PERMISSIONS = ("view_accessattempt", "delete_accessattempt", "view_accessfailurelog")


def officer_group_sync(**_signal_kwargs) -> None:
    officer_permissions_grant(app_label="privacy", codenames=OFFICER_PERMISSIONS)
    officer_permissions_grant(app_label="axes", codenames=OFFICER_LOGIN_PERMISSIONS)


def officer_permissions_grant(*, app_label: str, codenames: tuple[str, ...]) -> None:
    """Give the officers' group these permissions of an app (creating the group if need be). Apps whose objects
    officers read (segments, predict) call it from their own post_migrate receiver, with their own codenames."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=OFFICER_GROUP)
    group.permissions.add(*Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames))
