"""`python manage.py membership grant|revoke USER COST_CENTER [--role owner]`: who belongs to
which cost center (a member sees it; an owner also sees everything below it)."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from allocation.choices import MembershipRole
from allocation.services.access import membership_grant, membership_revoke
from pricing.errors import ApplicationError


class Command(BaseCommand):
    help = "Grant or revoke a user's membership of a cost center."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["grant", "revoke"])
        parser.add_argument("user", help="Username")
        parser.add_argument("cost_center", help="Cost center code")
        parser.add_argument("--role", default=MembershipRole.MEMBER, choices=MembershipRole.values)

    def handle(self, *args, action: str, user: str, cost_center: str, role: str, **options) -> None:
        try:
            if action == "grant":
                membership = membership_grant(username=user, cost_center_code=cost_center, role=role)
                result = {"user": user, "cost_center": cost_center, "role": membership.role}
            else:
                membership_revoke(username=user, cost_center_code=cost_center)
                result = {"user": user, "cost_center": cost_center, "role": None}
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(json.dumps(result))
