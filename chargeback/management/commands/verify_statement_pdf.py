"""`python manage.py verify_statement_pdf FILE`: is this statement PDF the organization's,
unchanged, and the approved statement? Exit code 0 only when it is."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chargeback.services.signing import pdf_verify


class Command(BaseCommand):
    help = (
        "Verify a statement PDF: whether its signature is intact and covers the whole file, who signed it, "
        "whether the certificate is the organization's (CHARGEBACK_SIGNING_CA), and whether the statement it "
        "carries is the approved one in the database. Prints the findings; exits 0 only when it is valid, else 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the PDF to verify")

    def handle(self, *args, file: str, **options) -> None:
        try:
            data = Path(file).read_bytes()
        except OSError as exc:
            raise CommandError(f"{file} cannot be read: {exc.strerror or exc}") from exc
        verification = pdf_verify(data)
        self.stdout.write(f"{file}: {verification.verdict}")
        for finding in verification.findings:
            self.stdout.write(f"  [{finding.mark:>4}] {finding.text}")
        if not verification.valid:
            raise CommandError("The PDF is not a valid signed statement.", returncode=1)
