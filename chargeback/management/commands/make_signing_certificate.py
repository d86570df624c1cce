"""`python manage.py make_signing_certificate`: a demo CA and the signing certificate it issues."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chargeback.services.signing import signing_certificate_make


class Command(BaseCommand):
    help = (
        "Make a self-signed CA and a document-signing certificate issued by it, for the demo and tests: "
        "ca.pem and signer.p12 (encrypted with CHARGEBACK_SIGNING_PASSPHRASE). Without --directory they go "
        "where CHARGEBACK_SIGNING_CA and CHARGEBACK_SIGNING_P12 point. Production uses its own CA (README)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", default="Example Corp", help="the organization the certificates name")
        parser.add_argument("--directory", help="write ca.pem and signer.p12 here instead of the configured paths")
        parser.add_argument("--if-missing", action="store_true", help="do nothing when a signing certificate exists")
        parser.add_argument("--force", action="store_true", help="replace an existing certificate")

    def handle(self, *args, organization: str, directory: str | None, if_missing: bool, force: bool, **options):
        if directory:
            ca_path, p12_path = Path(directory) / "ca.pem", Path(directory) / "signer.p12"
        else:
            ca_path, p12_path = Path(settings.CHARGEBACK_SIGNING_CA), Path(settings.CHARGEBACK_SIGNING_P12)
        if p12_path.exists() and not force:
            if if_missing:
                self.stdout.write(f"A signing certificate exists: {p12_path}")
                return
            raise CommandError(f"{p12_path} exists; --force replaces it (documents it signed then need the old CA).")
        made = signing_certificate_make(
            organization=organization,
            ca_path=ca_path,
            p12_path=p12_path,
            passphrase=settings.CHARGEBACK_SIGNING_PASSPHRASE,
        )
        self.stdout.write(f"CA certificate: {made.ca_path}")
        self.stdout.write(
            f"Signing certificate: {made.p12_path} ({made.subject}, valid until {made.not_after:%Y-%m-%d})"
        )
