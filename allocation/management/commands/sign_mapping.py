"""`python manage.py sign_mapping VERSION --user NAME`: signs a draft off as that finance approver."""

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from allocation.models import MappingVersion
from allocation.services.mapping.drafts import mapping_sign
from pricing.errors import ApplicationError


class Command(BaseCommand):
    help = "Sign a draft mapping version off; the user must be in the finance_approver group."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", type=int, help="Mapping version number")
        parser.add_argument("--user", required=True, help="Username of the finance approver signing off")
        parser.add_argument("--reason", default="", help="Why, for the audit trail")

    def handle(self, *args, version: int, user: str, reason: str, **options) -> None:
        actor = get_user_model().objects.filter(username=user).first()
        if actor is None:
            raise CommandError(f"no user named {user!r}")
        row = MappingVersion.objects.filter(number=version).first()
        if row is None:
            raise CommandError(f"no mapping version {version}")
        try:
            signed = mapping_sign(version=row, actor=actor, reason=reason)
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        result = {
            "version": signed.number,
            "signed_by": actor.get_username(),
            "signed_at": signed.signed_at.isoformat(),
            "content_hash": signed.content_hash,
        }
        self.stdout.write(json.dumps(result))
