"""Who may see what and do what: the one module that decides (DESIGN.md "Roles and access").

Three kinds of actor reach the system:
- a signed-in user, whose roles are Django groups (`finance_approver`, `finance_analyst`,
  `platform_admin`, `team_member`) and whose cost centers are their memberships;
- a user's API token, which acts as its user;
- a service account's API token (the gateway's, the ERP's), which holds one scope and
  may do that job and nothing else.

What an actor may *do* is a `Permission`, granted to roles and token scopes in `GRANTS`.
What an actor may *see* is a `CostCenterScope`: every cost center for finance and the
platform team, the cost centers a team member belongs to (and, for an owner, everything
below them) for the rest. Every URL names its rule in `URL_RULES` by URL name: the pages
through `chargeback.middleware.AccessMiddleware`, the API through
`allocation.api.access.AccessRulePermission`, and services and queued actions through
`access_require`. A URL without a rule is refused, and a test walks the URL conf so that
none ships without one.
"""

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.db.models import QuerySet
from django.utils import timezone

from allocation.choices import ApiTokenScope, MembershipRole
from allocation.models import ApiToken, CostCenter, CostCenterMembership
from pricing.errors import NotAllowed

__all__ = [
    "FINANCE_ANALYST",
    "GRANTS",
    "PERMISSION_HOLDERS",
    "FINANCE_APPROVER",
    "PLATFORM_ADMIN",
    "ROLES",
    "TEAM_MEMBER",
    "URL_RULES",
    "EVERY_COST_CENTER",
    "CostCenterScope",
    "Permission",
    "ServiceAccount",
    "UrlRule",
    "access_allows",
    "access_require",
    "api_token_authenticate",
    "batches_visible",
    "api_token_digest",
    "api_token_new",
    "cost_center_memberships",
    "cost_center_scope",
    "roles_of",
    "token_of",
    "url_rule",
    "user_of",
]

FINANCE_APPROVER = "finance_approver"
FINANCE_ANALYST = "finance_analyst"
PLATFORM_ADMIN = "platform_admin"
TEAM_MEMBER = "team_member"
ROLES: tuple[str, ...] = (FINANCE_APPROVER, FINANCE_ANALYST, PLATFORM_ADMIN, TEAM_MEMBER)

# A token reads as `cbk_<prefix>_<secret>`; the prefix is kept to recognise it in lists.
TOKEN_MARK = "cbk_"
_PREFIX_LENGTH = 8
# Writing last_used_at on every call would make each API call a write; a minute is exact enough.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class Permission(StrEnum):
    """What an actor may do; each URL and each guarded service names one."""

    PUBLIC = "public"  # the login page: no one needs to be signed in
    SIGNED_IN = "signed_in"  # any active user, with or without a role: their own home page
    API_DOCS = "api_docs"  # the OpenAPI schema and its docs: any user or token
    VIEW_PRICES = "view_prices"  # price books and rate cards: every role
    VIEW_SPEND = "view_spend"  # runs' cost centers and lines: finance and platform all, team members theirs
    VIEW_COMPANY = "view_company"  # company-wide usage, ingestion, mappings, runs, reconciliation
    VIEW_BATCHES = "view_batches"  # ingestion batches; the gateway sees the ones it sent
    FEED_LEDGER = "feed_ledger"  # usage uploads and events: the platform team and the gateway
    RATE_USAGE = "rate_usage"  # rate a month ahead of its allocation
    EDIT_MAPPING = "edit_mapping"  # draft and edit mapping versions
    SIGN_OFF = "sign_off"  # sign mapping versions and statements off, override a flagged run, close a month
    PREPARE_STATEMENTS = "prepare_statements"  # build a month's statements and send them for review
    FILE_DISPUTE = "file_dispute"  # dispute a line of one's own cost center's statement
    RESOLVE_DISPUTE = "resolve_dispute"  # review, accept or reject disputes
    RUN_ALLOCATION = "run_allocation"  # run a period's allocation
    ADMIN_SITE = "admin_site"  # Django's admin: its own staff check decides
    VIEW_JOURNAL_ENTRIES = "view_journal_entries"  # every cost center's journal entries: finance, platform, the ERP
    EXPORT_JOURNAL_ENTRIES = "export_journal_entries"  # hand entries over to the ERP: finance and the ERP
    ACKNOWLEDGE_JOURNAL_ENTRIES = "acknowledge_journal_entries"  # the ERP says what it posted: the ERP alone


_FINANCE = frozenset({FINANCE_APPROVER, FINANCE_ANALYST})
_COMPANY = _FINANCE | {PLATFORM_ADMIN}
# Holders are roles (group names) and service-account token scopes.
GRANTS: dict[Permission, frozenset[str]] = {
    Permission.API_DOCS: frozenset(ROLES) | {ApiTokenScope.GATEWAY, ApiTokenScope.ERP},
    Permission.VIEW_PRICES: frozenset(ROLES),
    Permission.VIEW_SPEND: _COMPANY | {TEAM_MEMBER},
    Permission.VIEW_COMPANY: _COMPANY,
    Permission.VIEW_BATCHES: _COMPANY | {ApiTokenScope.GATEWAY},
    Permission.FEED_LEDGER: frozenset({PLATFORM_ADMIN, ApiTokenScope.GATEWAY}),
    Permission.RATE_USAGE: _COMPANY,
    Permission.EDIT_MAPPING: _COMPANY,
    Permission.SIGN_OFF: frozenset({FINANCE_APPROVER}),
    Permission.RUN_ALLOCATION: _FINANCE,
    Permission.PREPARE_STATEMENTS: _FINANCE,
    Permission.FILE_DISPUTE: frozenset({TEAM_MEMBER}),
    Permission.RESOLVE_DISPUTE: _FINANCE,
    Permission.VIEW_JOURNAL_ENTRIES: _COMPANY | {ApiTokenScope.ERP},
    Permission.EXPORT_JOURNAL_ENTRIES: _FINANCE | {ApiTokenScope.ERP},
    Permission.ACKNOWLEDGE_JOURNAL_ENTRIES: frozenset({ApiTokenScope.ERP}),
}
# What a refusal tells the user: who may, in words (the groups are in the error's extra).
PERMISSION_HOLDERS: dict[Permission, str] = {
    Permission.SIGNED_IN: "a signed-in user",
    Permission.API_DOCS: "any user with a role, and service tokens",
    Permission.VIEW_PRICES: "any user with a role",
    Permission.VIEW_SPEND: "finance, the platform team, and team members for their own cost centers",
    Permission.VIEW_COMPANY: "finance and the platform team",
    Permission.VIEW_BATCHES: "finance, the platform team and the gateway",
    Permission.FEED_LEDGER: "the platform team and the gateway",
    Permission.RATE_USAGE: "finance and the platform team",
    Permission.EDIT_MAPPING: "finance and the platform team",
    Permission.SIGN_OFF: "a finance approver",
    Permission.RUN_ALLOCATION: "finance (approvers and analysts)",
    Permission.PREPARE_STATEMENTS: "finance (approvers and analysts)",
    Permission.FILE_DISPUTE: "members of the statement's cost center",
    Permission.RESOLVE_DISPUTE: "finance (approvers and analysts)",
    Permission.VIEW_JOURNAL_ENTRIES: "finance, the platform team and the ERP",
    Permission.EXPORT_JOURNAL_ENTRIES: "finance (approvers and analysts) and the ERP",
    Permission.ACKNOWLEDGE_JOURNAL_ENTRIES: "the ERP's service token",
}
# Who sees every cost center; the rest see their memberships.
_SEES_EVERY_COST_CENTER = _COMPANY


@dataclass(frozen=True, eq=False)
class ServiceAccount:
    """The actor behind a service account's token: authenticated, with no user, no roles,
    and the one scope of its token."""

    token: ApiToken
    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    @property
    def username(self) -> str:
        return f"{self.token.scope}:{self.token.name}"

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username


def user_of(actor):
    """The user behind an actor (to record as `created_by`), None for a service account."""
    if actor is None or isinstance(actor, ServiceAccount) or not getattr(actor, "is_authenticated", False):
        return None
    return actor


def token_of(actor) -> ApiToken | None:
    """The token behind a service account (to record as the sender), else None."""
    return actor.token if isinstance(actor, ServiceAccount) else None


def roles_of(actor) -> frozenset[str]:
    """An actor's holdings: a user's role groups, or a service account's token scope.
    Cached on the user object for the request, since every check asks."""
    if actor is None or not getattr(actor, "is_authenticated", False) or not actor.is_active:
        return frozenset()
    if isinstance(actor, ServiceAccount):
        return frozenset({actor.token.scope}) if actor.token.is_active else frozenset()
    cached = getattr(actor, "_access_roles", None)
    if cached is None:
        cached = frozenset(actor.groups.filter(name__in=ROLES).values_list("name", flat=True))
        actor._access_roles = cached
    return cached


def access_allows(actor, permission: Permission) -> bool:
    """Whether an actor holds a permission. A superuser (an administrator of the site)
    holds only what their groups give: they sign nothing off without being an approver."""
    if permission is Permission.PUBLIC:
        return True
    if permission is Permission.SIGNED_IN:  # their own home page, even before they hold a role
        return user_of(actor) is not None and actor.is_active
    return bool(roles_of(actor) & GRANTS.get(permission, frozenset()))


def access_require(
    actor, permission: Permission, *, doing: str, code: str = NotAllowed.code, message: str | None = None
) -> None:
    """Refuse an actor without the permission (`NotAllowed`), naming what they tried and
    who may; `code` and `message` word a refusal its pages and tests know by name."""
    if access_allows(actor, permission):
        return
    who = getattr(actor, "username", None) or "anonymous"
    holders = sorted(str(holder) for holder in GRANTS.get(permission, frozenset()))
    raise NotAllowed(
        message or f"{who} may not {doing}: only {PERMISSION_HOLDERS.get(permission, 'no one')} may",
        code=code,
        extra={"permission": str(permission), "holders": holders, "actor": who},
    )


@dataclass(frozen=True)
class CostCenterScope:
    """The cost centers an actor may see: every one (`ids` is None), or these."""

    ids: frozenset[int] | None

    @property
    def is_everything(self) -> bool:
        return self.ids is None

    def filter(self, queryset: QuerySet, field: str = "cost_center") -> QuerySet:
        """The queryset narrowed to rows whose `field` (a cost center relation) is in scope."""
        if self.ids is None:
            return queryset
        return queryset.filter(**{f"{field}__in": self.ids})

    def includes(self, cost_center_id: int | None) -> bool:
        return self.ids is None or cost_center_id in self.ids


EVERY_COST_CENTER = CostCenterScope(ids=None)


def cost_center_scope(actor) -> CostCenterScope:
    """What an actor sees: finance and the platform team every cost center; anyone else
    the cost centers they are members of, and everything below those they own."""
    roles = roles_of(actor)
    if roles & _SEES_EVERY_COST_CENTER:
        return EVERY_COST_CENTER
    if TEAM_MEMBER not in roles:
        return CostCenterScope(ids=frozenset())
    return cost_center_memberships(actor)


def cost_center_memberships(actor) -> CostCenterScope:
    """The cost centers an actor belongs to, whatever their roles let them see: those
    they are members of, and everything below those they own. What one may act for
    (dispute a statement), as against `cost_center_scope`, what one may see: finance
    sees every cost center but speaks for none it is not a member of."""
    if not (user := user_of(actor)):
        return CostCenterScope(ids=frozenset())
    memberships = list(CostCenterMembership.objects.filter(user=user).values_list("cost_center_id", "role"))
    ids = {cost_center_id for cost_center_id, _ in memberships}
    owned = [cost_center_id for cost_center_id, role in memberships if role == MembershipRole.OWNER]
    if owned:
        ids |= _descendants(owned)
    return CostCenterScope(ids=frozenset(ids))


def _descendants(roots: Iterable[int]) -> set[int]:
    """Every cost center below the roots (the tree is small: hundreds, not millions)."""
    children: dict[int, list[int]] = {}
    for pk, parent_id in CostCenter.objects.filter(parent__isnull=False).values_list("pk", "parent_id"):
        children.setdefault(parent_id, []).append(pk)
    found: set[int] = set()
    pending = list(roots)
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


# --- API tokens --------------------------------------------------------------------


def api_token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def api_token_new() -> tuple[str, str, str]:
    """A fresh token: (the token to show once, its prefix, its digest to store)."""
    prefix = secrets.token_hex(_PREFIX_LENGTH // 2)
    raw = f"{TOKEN_MARK}{prefix}_{secrets.token_urlsafe(32)}"
    return raw, prefix, api_token_digest(raw)


def api_token_authenticate(raw: str):
    """The actor a presented token stands for, or None when it is unknown or revoked.
    Records when the token was last used."""
    if not raw.startswith(TOKEN_MARK) or len(raw) > 200:
        return None
    token = ApiToken.objects.select_related("user").filter(digest=api_token_digest(raw)).first()
    if token is None or not token.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    if token.scope == ApiTokenScope.USER:
        user = token.user
        return (user, token) if user.is_active else None
    return ServiceAccount(token=token), token


# --- every URL's rule -------------------------------------------------------------


@dataclass(frozen=True)
class UrlRule:
    """Who may read a URL (GET, HEAD, OPTIONS) and who may write to it (any other method;
    None: the URL takes no writes). `scoped`: what it shows is narrowed to the actor's
    cost centers (or, for the gateway, its own batches)."""

    read: Permission | None
    write: Permission | None = None
    scoped: bool = False

    def permission_for(self, method: str) -> Permission | None:
        return self.read if method in ("GET", "HEAD", "OPTIONS") else self.write


_P = Permission
URL_RULES: dict[str, UrlRule] = {
    # the site
    "login": UrlRule(read=_P.PUBLIC, write=_P.PUBLIC),
    "logout": UrlRule(read=_P.PUBLIC, write=_P.PUBLIC),
    "home": UrlRule(read=_P.SIGNED_IN, scoped=True),
    "favicon": UrlRule(read=_P.PUBLIC),
    "admin:*": UrlRule(read=_P.ADMIN_SITE, write=_P.ADMIN_SITE),
    # usage ledger and its ingestion
    "usage-overview": UrlRule(read=_P.VIEW_COMPANY),
    "usage-batches": UrlRule(read=_P.VIEW_BATCHES, write=_P.FEED_LEDGER),
    "usage-batch": UrlRule(read=_P.VIEW_BATCHES),
    "usage-batch-rejections": UrlRule(read=_P.VIEW_BATCHES),
    # organization
    "organization": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    # rating and prices
    "unpriced-usage": UrlRule(read=_P.VIEW_COMPANY, write=_P.RATE_USAGE),
    "price-books": UrlRule(read=_P.VIEW_PRICES),
    "price-book": UrlRule(read=_P.VIEW_PRICES),
    "price-book-diff": UrlRule(read=_P.VIEW_PRICES),
    "price-book-export": UrlRule(read=_P.VIEW_PRICES),
    # mapping versions
    "mapping-versions": UrlRule(read=_P.VIEW_COMPANY, write=_P.EDIT_MAPPING),
    "mapping-version": UrlRule(read=_P.VIEW_COMPANY),
    "mapping-version-preview": UrlRule(read=_P.VIEW_COMPANY),
    "mapping-version-export": UrlRule(read=_P.VIEW_COMPANY),
    "mapping-version-sign": UrlRule(read=None, write=_P.SIGN_OFF),
    "mapping-rule-add": UrlRule(read=None, write=_P.EDIT_MAPPING),
    "mapping-rule-edit": UrlRule(read=_P.EDIT_MAPPING, write=_P.EDIT_MAPPING),
    "mapping-rule-delete": UrlRule(read=None, write=_P.EDIT_MAPPING),
    "mapping-rule-move": UrlRule(read=None, write=_P.EDIT_MAPPING),
    # allocation runs: the period page is company-wide; a run's cost centers and lines are scoped
    "allocation-runs": UrlRule(read=_P.VIEW_COMPANY, write=_P.RUN_ALLOCATION),
    "allocation-run": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "allocation-run-lines": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "allocation-run-lines-csv": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    # the monthly close: statements are scoped to the actor's cost centers
    "statements": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "statements-build": UrlRule(read=None, write=_P.PREPARE_STATEMENTS),
    "statements-submit": UrlRule(read=None, write=_P.PREPARE_STATEMENTS),
    "statements-approve": UrlRule(read=_P.SIGN_OFF, write=_P.SIGN_OFF),
    "period-close": UrlRule(read=None, write=_P.SIGN_OFF),
    "period-reopen": UrlRule(read=None, write=_P.SIGN_OFF),
    "run-override": UrlRule(read=None, write=_P.SIGN_OFF),
    "statement": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "statement-submit": UrlRule(read=None, write=_P.PREPARE_STATEMENTS),
    "statement-return": UrlRule(read=None, write=_P.PREPARE_STATEMENTS),
    "statement-approve": UrlRule(read=_P.SIGN_OFF, write=_P.SIGN_OFF),
    "statement-reopen": UrlRule(read=_P.SIGN_OFF, write=_P.SIGN_OFF),
    "statement-csv": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "statement-xlsx": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "statement-pdf": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "statement-line": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "statement-rollup": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    # any signed-in user checks a statement PDF; what it tells of the database is scoped
    "pdf-verify": UrlRule(read=_P.SIGNED_IN, write=_P.SIGNED_IN, scoped=True),
    "dispute-file": UrlRule(read=_P.FILE_DISPUTE, write=_P.FILE_DISPUTE, scoped=True),
    "disputes": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "dispute": UrlRule(read=_P.VIEW_SPEND, write=_P.RESOLVE_DISPUTE, scoped=True),
    "dispute-evidence": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    # the API
    "api-root": UrlRule(read=_P.API_DOCS),
    "api-schema": UrlRule(read=_P.API_DOCS),
    "api-docs": UrlRule(read=_P.API_DOCS),
    "costcenter-list": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "costcenter-detail": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "team-list": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "team-detail": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "feature-list": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "feature-detail": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "tenant-list": UrlRule(read=_P.VIEW_COMPANY),
    "tenant-detail": UrlRule(read=_P.VIEW_COMPANY),
    "usage-events": UrlRule(read=None, write=_P.FEED_LEDGER),
    "usage-summary": UrlRule(read=_P.VIEW_COMPANY),
    "usage-tag-coverage": UrlRule(read=_P.VIEW_COMPANY),
    "api-usage-batch-list": UrlRule(read=_P.VIEW_BATCHES, write=_P.FEED_LEDGER, scoped=True),
    "api-usage-batch-detail": UrlRule(read=_P.VIEW_BATCHES, scoped=True),
    "api-usage-batch-rejections": UrlRule(read=_P.VIEW_BATCHES, scoped=True),
    "api-allocation-run-list": UrlRule(read=_P.VIEW_COMPANY, write=_P.RUN_ALLOCATION),
    "api-allocation-run-detail": UrlRule(read=_P.VIEW_COMPANY),
    "api-allocation-run-summary": UrlRule(read=_P.VIEW_COMPANY),
    "api-allocation-run-progress": UrlRule(read=_P.VIEW_COMPANY),
    # the close through the API: as its pages, scoped to the actor's cost centers
    "api-period-list": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "api-period-detail": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "api-period-close": UrlRule(read=None, write=_P.SIGN_OFF),
    "api-period-reopen": UrlRule(read=None, write=_P.SIGN_OFF),
    "api-statement-list": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "api-statement-detail": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "api-statement-lines": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "api-statement-lines-csv": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "api-statement-submit": UrlRule(read=None, write=_P.PREPARE_STATEMENTS),
    "api-statement-return": UrlRule(read=None, write=_P.PREPARE_STATEMENTS),
    "api-statement-approve": UrlRule(read=None, write=_P.SIGN_OFF),
    "api-statement-reopen": UrlRule(read=None, write=_P.SIGN_OFF),
    "api-dispute-list": UrlRule(read=_P.VIEW_SPEND, write=_P.FILE_DISPUTE, scoped=True),
    "api-dispute-detail": UrlRule(read=_P.VIEW_SPEND, scoped=True),
    "api-dispute-review": UrlRule(read=None, write=_P.RESOLVE_DISPUTE),
    "api-dispute-accept": UrlRule(read=None, write=_P.RESOLVE_DISPUTE),
    "api-dispute-reject": UrlRule(read=None, write=_P.RESOLVE_DISPUTE),
    # journal entries: company-wide, for finance, the platform team and the ERP, which alone acknowledges
    "api-journal-entry-list": UrlRule(read=_P.VIEW_JOURNAL_ENTRIES),
    "api-journal-entry-detail": UrlRule(read=_P.VIEW_JOURNAL_ENTRIES),
    "api-journal-entry-csv": UrlRule(read=_P.VIEW_JOURNAL_ENTRIES),
    "api-journal-entry-acknowledge": UrlRule(read=None, write=_P.ACKNOWLEDGE_JOURNAL_ENTRIES),
}


def url_rule(url_name: str | None, namespace: str = "") -> UrlRule | None:
    """The rule a URL declares (a namespace, such as the admin's, may declare one for all)."""
    if namespace and f"{namespace}:*" in URL_RULES:
        return URL_RULES[f"{namespace}:*"]
    return URL_RULES.get(url_name or "")


def batches_visible(actor, queryset: QuerySet) -> QuerySet:
    """Ingestion batches an actor may see: the gateway the ones it sent; finance and the
    platform team all of them; anyone else none."""
    if not access_allows(actor, Permission.VIEW_BATCHES):
        return queryset.none()
    return queryset.filter(api_token=actor.token) if isinstance(actor, ServiceAccount) else queryset
