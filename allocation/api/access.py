"""The API's side of `allocation/access.py`: tokens authenticate, and every view's URL rule
is checked before the view runs. Both are the project's DRF defaults (settings)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from allocation.access import Permission, access_require, api_token_authenticate, url_rule
from pricing.errors import NotAllowed

__all__ = ["AccessRulePermission", "ApiTokenAuthentication", "ApiTokenScheme"]

# `Authorization: Bearer cbk_…` (RFC 6750), and `Token cbk_…` as DRF clients send it.
_SCHEMES = (b"bearer", b"token")


class ApiTokenAuthentication(BaseAuthentication):
    """An API token in the Authorization header: a user's acts as its user, a service
    account's as that account. An unknown or revoked token is a 401, never anonymous."""

    def authenticate(self, request: Request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in _SCHEMES:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("the Authorization header takes one token: 'Bearer <token>'")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("the token is not ASCII") from None
        authenticated = api_token_authenticate(raw)
        if authenticated is None:
            raise AuthenticationFailed("unknown or revoked API token")
        return authenticated

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The token in the OpenAPI schema, so the docs offer 'Authorize' with a bearer token."""

    target_class = "allocation.api.access.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from `manage.py api_token issue` (`cbk_…`): a user's, or a service account's",
        }


class AccessRulePermission(BasePermission):
    """The URL's rule from `URL_RULES`: a URL without one is refused to everyone."""

    def has_permission(self, request: Request, view) -> bool:
        match = request.resolver_match
        rule = url_rule(match.url_name if match else None, match.namespace if match else "")
        if rule is None:
            raise NotAllowed("this URL declares no access rule, so no one may use it", code="no_access_rule")
        permission = rule.permission_for(request.method)
        if permission is None:
            if hasattr(view, request.method.lower()):
                raise NotAllowed(f"{request.path} declares no rule for {request.method}", code="no_access_rule")
            return True  # a method the view does not take either: it answers 405
        if permission is Permission.PUBLIC:
            return True
        if not request.user or not request.user.is_authenticated:
            return False
        access_require(request.user, permission, doing=f"{request.method} {request.path}")
        return True
