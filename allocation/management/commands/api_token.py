"""`python manage.py api_token issue|revoke|list`: API tokens for users and service accounts.

    python manage.py api_token issue --name gateway-prod --scope gateway
    python manage.py api_token issue --name "alice laptop" --scope user --user alice
    python manage.py api_token revoke 1a2b3c4d
    python manage.py api_token list

`issue` prints the token once, in a JSON object; only its SHA-256 is kept.
"""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from allocation.choices import ApiTokenScope
from allocation.models import ApiToken
from allocation.services.access import api_token_issue, api_token_revoke
from pricing.errors import ApplicationError


class Command(BaseCommand):
    help = "Issue, revoke or list API tokens (users' tokens and service accounts': gateway, ERP)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        issue = actions.add_parser("issue", help="Issue a token and print it once")
        issue.add_argument("--name", required=True, help="Who or what holds it")
        issue.add_argument("--scope", required=True, choices=ApiTokenScope.values)
        issue.add_argument("--user", default=None, help="For --scope user: the user it acts as")
        revoke = actions.add_parser("revoke", help="Revoke a token by its prefix")
        revoke.add_argument("prefix")
        actions.add_parser("list", help="Every token: prefix, name, scope, user, last used, revoked")

    def handle(self, *args, action: str, **options) -> None:
        try:
            if action == "issue":
                issued = api_token_issue(name=options["name"], scope=options["scope"], username=options["user"])
                result = {**_row(issued.token), "token": issued.secret}
            elif action == "revoke":
                result = _row(api_token_revoke(prefix=options["prefix"]))
            else:
                result = [_row(token) for token in ApiToken.objects.select_related("user")]
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(json.dumps(result))


def _row(token: ApiToken) -> dict:
    return {
        "prefix": token.prefix,
        "name": token.name,
        "scope": token.scope,
        "user": token.user.get_username() if token.user else None,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }
