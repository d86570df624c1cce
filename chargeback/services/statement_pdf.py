"""The signed PDF of an approved statement: rendered by WeasyPrint from the statement's
stored lines and sign-off, signed with the organization's certificate, kept under
MEDIA_ROOT with its SHA-256.

The PDF says exactly what the approved statement says: it reads only what was fixed at
sign-off (the lines, the figures, the run's reconciliation, the sign-off), never live
prices, the current mapping or disputes filed since. It is PDF/A-3b and carries the lines
as CSV (the same bytes as the CSV download), every feature's cost per request and per
trace as CSV (the pages print the largest features'), and the statement's identity as
JSON, so the document and its data travel together and a verifier can find the statement
it claims to be.
"""

import functools
import hashlib
import json
import logging
import re
from datetime import datetime
from decimal import Decimal
from io import BytesIO
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from chargeback.choices import (
    SIGNED_STATUSES,
    STATEMENT_PDF_IDENTITY_FILE,
    STATEMENT_PDF_LINES_FILE,
    STATEMENT_PDF_UNIT_COSTS_FILE,
    StatementPdfStatus,
)
from chargeback.models import Statement, StatementPdf
from chargeback.selectors.statements import (
    UNIT_COSTS_SHOWN,
    statement_file_name,
    statement_lines_csv,
    statement_pdf_lines,
    statement_reconciliation,
    statement_sections,
    statement_unit_costs_csv,
)
from chargeback.services.statements import statement_content_hash
from pricing.errors import ApplicationError, Conflict
from pricing.periods import Period

__all__ = [
    "statement_pdf_identity",
    "statement_pdf_issue",
    "statement_pdf_render",
]

logger = logging.getLogger(__name__)

_TEMPLATE = "chargeback/statement_pdf.html"

# WeasyPrint's user-agent stylesheet gives every element of the document ::marker,
# ::footnote-call/-marker and ::note-call/-marker/-callback rules, so each of the
# statement's ~4,000 table cells got six pseudo-element styles computed for nothing: the
# statement has no footnotes or notes, and markers only on its list items. Dropping those
# rules cut a 20-page statement's render by about a tenth (bench/statement_pdf/run.py).
_UA_RULES_UNUSED = re.compile(r"^::(?:footnote|note)-[a-z-]+ *\{.*$", re.MULTILINE)


@functools.cache
def _statement_html_class():
    """WeasyPrint's HTML with the user-agent stylesheet less the rules above (built once)."""
    import weasyprint
    from weasyprint import CSS, HTML
    from weasyprint.css import __file__ as css_package

    if not hasattr(HTML, "_ua_stylesheets"):  # an upgrade renamed the hook: say so, don't go slow silently
        raise RuntimeError(f"WeasyPrint {weasyprint.__version__} has no HTML._ua_stylesheets")
    path = Path(css_package).with_name("html5_ua.css")
    rules = _UA_RULES_UNUSED.sub("", path.read_text(encoding="utf-8")).replace("\n::marker {", "\nli::marker {")
    user_agent = CSS(string=rules, base_url=str(path))

    class StatementHTML(HTML):
        def _ua_stylesheets(self, *args, **kwargs) -> list:  # WeasyPrint's hook for its UA sheet
            return [user_agent]

    return StatementHTML


def _refuse_unsigned(statement: Statement) -> None:
    if statement.status not in SIGNED_STATUSES or not statement.content_hash:
        raise Conflict(
            f"{statement.cost_center.code}'s statement for {statement.period} is "
            f"{statement.get_status_display().lower()}: only a signed-off statement is issued as a PDF",
            code="statement_not_signed",
            extra={"statement": statement.pk, "status": statement.status},
        )
    if statement_content_hash(statement) != statement.content_hash:
        # The database no longer holds what was approved: a PDF of it would certify a lie.
        raise Conflict(
            f"{statement.cost_center.code}'s statement for {statement.period} no longer matches "
            "the SHA-256 recorded at its sign-off: it is not issued as a PDF",
            code="statement_content_changed",
            extra={"statement": statement.pk, "content_hash": statement.content_hash},
        )


def statement_pdf_identity(statement: Statement) -> dict:
    """What the PDF claims to be: the statement it renders and the hash of its content."""
    return {
        "statement_id": statement.pk,
        "cost_center": statement.cost_center.code,
        "period": statement.period,
        "content_hash": statement.content_hash,
    }


def _share(part: Decimal, whole: Decimal) -> Decimal | None:
    return part / whole if whole else None


def _person(user) -> str:
    """'Fiona Reyes (fiona)', or the username alone when the account has no name."""
    name, username = user.get_full_name(), user.get_username()
    return f"{name} ({username})" if name and name != username else username


def _context(statement: Statement) -> dict:
    sections = statement_sections(statement=statement)
    charges = sum((row["amount"] or Decimal(0) for row in sections["by_modality"]), Decimal(0))
    for row in (*sections["by_modality"], *sections["by_provider"]):
        row["share"] = _share(row["amount"] or Decimal(0), charges)
    previous = statement.previous_total
    # The largest features' unit costs in print; every feature's in the attached CSV.
    unit_costs, rest = sections["unit_costs"][:UNIT_COSTS_SHOWN], sections["unit_costs"][UNIT_COSTS_SHOWN:]
    rest_amount = sum((row["amount"] for row in rest), Decimal(0))
    return {
        "statement": statement,
        "sections": sections,
        "unit_costs": unit_costs,
        "unit_costs_rest": {"count": len(rest), "amount": rest_amount, "share": _share(rest_amount, charges)},
        "unit_costs_file": STATEMENT_PDF_UNIT_COSTS_FILE,
        "charges_total": charges,
        "previous_period": Period.parse(statement.period).previous,
        "change_share": _share(statement.total - previous, abs(previous)) if previous is not None else None,
        "lines": statement_pdf_lines(statement=statement),
        "reconciliation": statement_reconciliation(statement=statement),
        "approver": _person(statement.approved_by),
        "lines_file": STATEMENT_PDF_LINES_FILE,
        "identity_file": STATEMENT_PDF_IDENTITY_FILE,
        "rendered_at": timezone.now(),
    }


def statement_pdf_render(statement: Statement) -> bytes:
    """The statement as an unsigned PDF/A-3b document, with its lines (CSV) and identity
    (JSON) embedded. Refuses (Conflict) a statement that is not signed off, or whose
    content no longer matches its sign-off."""
    from weasyprint import Attachment  # imported here: it loads Pango, which pages and commands never need

    statement = Statement.objects.select_related("cost_center", "run", "approved_by").get(pk=statement.pk)
    _refuse_unsigned(statement)
    context = _context(statement)
    html = render_to_string(_TEMPLATE, context)
    # Dated at sign-off, so the embedded files say when their content was fixed.
    fixed_at: datetime = statement.approved_at
    attachments = [
        Attachment(
            string=statement_lines_csv(statement=statement),
            name=STATEMENT_PDF_LINES_FILE,
            description=f"Lines of {statement.cost_center.code}'s statement for {statement.period} (CSV)",
            created=fixed_at,
            modified=fixed_at,
            relationship="Data",
        ),
        Attachment(
            string=statement_unit_costs_csv(statement=statement, unit_costs=context["sections"]["unit_costs"]),
            name=STATEMENT_PDF_UNIT_COSTS_FILE,
            description=f"Cost per request and per trace of every feature on {statement.cost_center.code}'s "
            f"statement for {statement.period} (CSV)",
            created=fixed_at,
            modified=fixed_at,
            relationship="Data",
        ),
        Attachment(
            string=json.dumps(statement_pdf_identity(statement), indent=2, sort_keys=True).encode(),
            name=STATEMENT_PDF_IDENTITY_FILE,
            description="The statement this document renders and the SHA-256 of its approved content (JSON)",
            created=fixed_at,
            modified=fixed_at,
            relationship="Data",
        ),
    ]
    document = _statement_html_class()(string=html, base_url=str(settings.BASE_DIR))
    return document.write_pdf(pdf_variant="pdf/a-3b", attachments=attachments)


def _page_count(pdf: bytes) -> int:
    from pypdf import PdfReader

    return len(PdfReader(BytesIO(pdf)).pages)


def _file_name(statement: Statement) -> str:
    return f"{statement.period}/{statement_file_name(statement, 'pdf')}"


def statement_pdf_issue(statement: Statement, *, force: bool = False) -> StatementPdf:
    """Render, sign and store a signed-off statement's PDF, with its SHA-256, size and
    page count. Idempotent: a ready PDF is left as it is unless `force` (a new
    certificate, a template fix). A refusal or a failure is recorded on the row, with
    why, and the row returned: a PDF that can't be made never undoes a sign-off."""
    from chargeback.services.signing import pdf_sign

    with transaction.atomic():
        pdf, _ = StatementPdf.objects.select_for_update().get_or_create(statement=statement)
        if pdf.status == StatementPdfStatus.READY and not force:
            return pdf
        pdf.status, pdf.error = StatementPdfStatus.PENDING, ""
        pdf.save(update_fields=["status", "error"])
    try:
        signed = pdf_sign(statement_pdf_render(statement))
        pages = _page_count(signed)
    except ApplicationError as exc:  # not signed off, changed since, no signing certificate
        return _failed(pdf, exc.message)
    except Exception as exc:  # a broken template, font or certificate: said on the page, kept in the log
        logger.exception("statement %s: its PDF could not be made", statement.pk)
        return _failed(pdf, f"{type(exc).__name__}: {exc}")
    with transaction.atomic():
        pdf = StatementPdf.objects.select_for_update().get(pk=pdf.pk)
        if pdf.file:  # a forced re-issue: the new file takes the old one's name
            pdf.file.storage.delete(pdf.file.name)
        pdf.file.save(_file_name(statement), ContentFile(signed), save=False)
        pdf.status = StatementPdfStatus.READY
        pdf.sha256 = hashlib.sha256(signed).hexdigest()
        pdf.size = len(signed)
        pdf.page_count = pages
        pdf.rendered_at = timezone.now()
        pdf.error = ""
        pdf.save()
    return pdf


def _failed(pdf: StatementPdf, error: str) -> StatementPdf:
    pdf.status, pdf.error = StatementPdfStatus.FAILED, error[:2000]
    pdf.save(update_fields=["status", "error"])
    return pdf
