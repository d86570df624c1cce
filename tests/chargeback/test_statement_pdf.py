"""The signed statement PDF (chargeback.services.statement_pdf), read back as a reader and
a machine would: its text, its embedded lines CSV and identity JSON, its PDF/A-3 mark, its
signature, its pages; made on approval (in-process and on a real Celery worker), shown and
served on the statement's page."""

import hashlib
import io
import json
import re
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from openpyxl import load_workbook
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader

from chargeback.choices import (
    STATEMENT_PDF_IDENTITY_FILE,
    STATEMENT_PDF_LINES_FILE,
    STATEMENT_PDF_UNIT_COSTS_FILE,
    StatementLineKind,
    StatementPdfStatus,
)
from chargeback.models import Statement, StatementLine, StatementPdf
from chargeback.selectors.statements import (
    STATEMENT_UNIT_COST_HEADER,
    UNIT_COSTS_SHOWN,
    statement_lines_csv,
    statement_sections,
    statement_unit_costs_csv,
)
from chargeback.services.statement_pdf import statement_pdf_issue, statement_pdf_render
from chargeback.services.statements import (
    statement_approve,
    statement_submit,
    statements_approve_period,
    statements_build,
    statements_submit_period,
)
from pricing.errors import Conflict
from pricing.formatting import money_text
from pricing.money import quantize
from tests.chargeback.close_world import MONTH, close_world
from tests.chargeback.statement_pdf_world import approved_statement

WORKER_TIMEOUT = 120  # seconds for the worker to render and sign


@pytest.fixture
def world(db, tmp_path, django_user_model, settings):
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    return close_world(tmp_path, django_user_model)


@pytest.fixture
def approve(world, statement_pdfs, django_capture_on_commit_callbacks):
    """Sign a statement off and run what its commit would start: the PDF's task (eager)."""

    def approve(code: str = "CC-110", *, extra_lines: int = 0) -> Statement:
        with django_capture_on_commit_callbacks(execute=True):
            return approved_statement(world, code, extra_lines=extra_lines)

    return approve


def _reader(data: bytes) -> PdfReader:
    return PdfReader(io.BytesIO(data))


def _text(reader: PdfReader) -> str:
    return "\n".join(page.extract_text() for page in reader.pages)


def _flat(text: str) -> str:
    """Text with its line breaks and runs of spaces made single spaces (a wrapped cell)."""
    return re.sub(r"\s+", " ", text)


def _stored(statement: Statement) -> tuple[StatementPdf, bytes]:
    pdf = StatementPdf.objects.get(statement=statement)
    assert pdf.status == StatementPdfStatus.READY, pdf.error
    with pdf.file.open("rb") as handle:
        return pdf, handle.read()


def test_approval_makes_a_signed_pdf_that_says_what_the_statement_says(world, approve):
    statement = approve("CC-100")  # the owner of the unallocated buckets
    pdf, data = _stored(statement)

    assert (pdf.sha256, pdf.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert pdf.file.name == f"statements/pdf/{MONTH}/statement-CC-100-{MONTH}.pdf"
    reader = _reader(data)
    assert pdf.page_count == len(reader.pages) >= 4
    text = _flat(_text(reader))
    for expected in (
        "CC-100",
        statement.cost_center.name,
        f"Period {MONTH}",
        f"Total for {MONTH} {money_text(statement.total)}",
        f"Chargeback charged to the cost center; journal entries follow {money_text(statement.chargeback)}",
        f"Showback reported only, not charged {money_text(statement.showback)}",
        f"Unallocated owned buckets this cost center owns {money_text(statement.unallocated)}",
        "Signed off by fiona",
        statement.content_hash,
        f"Allocation run #{statement.run_id}",
        statement.run.fingerprint,
        "Unallocated buckets this cost center owns",
        f"Page 1 of {pdf.page_count}",
        "Lines (every line of the statement)",
        "10. ",  # the contents list keeps its numbers under the trimmed user-agent stylesheet
    ):
        assert expected in text, expected
    assert statement.unallocated > 0
    # The statement's lines, every one, in the lines table.
    assert f"Total of {statement.line_count} lines {money_text(statement.total)}" in text


def test_the_pdf_carries_the_lines_csv_of_the_download_and_its_identity(world, approve, client):
    statement = approve()
    _pdf, data = _stored(statement)
    attachments = _reader(data).attachments

    assert set(attachments) == {STATEMENT_PDF_LINES_FILE, STATEMENT_PDF_UNIT_COSTS_FILE, STATEMENT_PDF_IDENTITY_FILE}
    client.force_login(world["approver"])
    download = b"".join(client.get(reverse("statement-csv", args=[statement.pk])).streaming_content)
    assert attachments[STATEMENT_PDF_LINES_FILE] == [download] == [statement_lines_csv(statement=statement)]
    assert download.count(b"\r\n") == statement.line_count + 1  # the header and every line
    assert json.loads(attachments[STATEMENT_PDF_IDENTITY_FILE][0]) == {
        "statement_id": statement.pk,
        "cost_center": "CC-110",
        "period": str(MONTH),
        "content_hash": statement.content_hash,
    }


def test_the_pdf_is_pdf_a_3_and_signed_by_the_organization(world, approve, statement_pdfs):
    statement = approve()
    _pdf, data = _stored(statement)
    reader = _reader(data)

    xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode()
    assert re.search(r"pdfaid:part(=\"|>)3", xmp), xmp
    assert re.search(r"pdfaid:conformance(=\"|>)B", xmp), xmp
    # Each embedded file says how it relates to the document, as PDF/A-3 asks.
    relationships = {spec.get_object()["/AFRelationship"] for spec in reader.trailer["/Root"]["/AF"]}
    assert relationships == {"/Data"}

    signature = PdfFileReader(io.BytesIO(data)).embedded_signatures[0]
    context = ValidationContext(trust_roots=[load_cert_from_pemder(str(statement_pdfs.ca_path))])
    status = validate_pdf_signature(signature, context)
    assert (status.intact, status.valid, status.trusted, status.coverage.name) == (True, True, True, "ENTIRE_FILE")


def test_a_statement_not_signed_off_is_never_rendered(world, statement_pdfs):
    statements_build(period=MONTH, actor=world["analyst"])
    statement = Statement.objects.get(period=str(MONTH), cost_center__code="CC-110")
    with pytest.raises(Conflict, match="is draft: only a signed-off statement is issued as a PDF") as refused:
        statement_pdf_render(statement)
    assert refused.value.code == "statement_not_signed"
    statement_submit(statement=statement, actor=world["analyst"])
    with pytest.raises(Conflict, match="is in review"):
        statement_pdf_render(statement)

    pdf = statement_pdf_issue(statement)  # the task's service records the refusal, never raises
    assert (pdf.status, pdf.file.name) == (StatementPdfStatus.FAILED, "")
    assert "only a signed-off statement" in pdf.error


def test_a_statement_changed_after_sign_off_is_not_rendered(world, approve):
    """Someone with the database's keys changes a signed line (on PostgreSQL past its trigger,
    as the database owner can): the renderer refuses to certify it."""
    statement = approve()
    if connection.vendor == "postgresql":  # rolled back with the test's transaction
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks pending, as ALTER asks
            cursor.execute("ALTER TABLE chargeback_statementline DISABLE TRIGGER chargeback_statement_line_frozen")
    StatementLine.objects.filter(statement=statement, kind=StatementLineKind.CHARGE).update(amount=1)

    with pytest.raises(Conflict, match="no longer matches the SHA-256 recorded at its sign-off"):
        statement_pdf_render(statement)
    pdf = statement_pdf_issue(statement, force=True)
    assert pdf.status == StatementPdfStatus.FAILED and "no longer matches" in pdf.error


def test_issuing_again_leaves_a_ready_pdf_alone_unless_forced(world, approve):
    statement = approve()
    first, first_bytes = _stored(statement)

    again = statement_pdf_issue(statement)
    assert (again.sha256, again.file.name, again.rendered_at) == (first.sha256, first.file.name, first.rendered_at)

    forced = statement_pdf_issue(statement, force=True)
    _pdf, forced_bytes = _stored(statement)
    assert forced.rendered_at > first.rendered_at
    assert forced.sha256 == hashlib.sha256(forced_bytes).hexdigest()
    assert forced.file.name == first.file.name  # replaced, under the same name
    assert _reader(forced_bytes).attachments == _reader(first_bytes).attachments  # the same content


def test_the_pdf_prints_the_largest_features_unit_costs_and_carries_every_features(world, approve, client):
    statement = approve(extra_lines=300)
    _pdf, data = _stored(statement)
    reader = _reader(data)
    unit_costs = statement_sections(statement=statement)["unit_costs"]
    assert len(unit_costs) > UNIT_COSTS_SHOWN

    attached = reader.attachments[STATEMENT_PDF_UNIT_COSTS_FILE]
    assert attached == [statement_unit_costs_csv(statement=statement)]
    rows = [line.split(",") for line in attached[0].decode().strip().splitlines()]
    assert rows[0] == STATEMENT_UNIT_COST_HEADER and len(rows) - 1 == len(unit_costs)
    assert sum(Decimal(row[5]) for row in rows[1:]) == sum(row["amount"] for row in unit_costs)
    first = unit_costs[0]
    assert rows[1][2:5] == [first["team"], first["feature"], first["environment"]]
    assert Decimal(rows[1][7]) == quantize(first["per_request"], Decimal("0.000001"))
    # In print: the largest features, and where the others are.
    text = _flat(_text(reader))
    rest = unit_costs[UNIT_COSTS_SHOWN:]
    assert (
        f"The {UNIT_COSTS_SHOWN} largest of {len(unit_costs)} features. The other {len(rest)} "
        f"({money_text(sum(row['amount'] for row in rest))}"
    ) in text
    assert f"are in {STATEMENT_PDF_UNIT_COSTS_FILE}, attached to this PDF" in text
    last_shown, first_left = unit_costs[UNIT_COSTS_SHOWN - 1], rest[0]
    assert f"{last_shown['team']} · {last_shown['feature']} · {last_shown['environment']}" in text
    # The XLSX download carries every feature too.
    client.force_login(world["approver"])
    book = load_workbook(io.BytesIO(client.get(reverse("statement-xlsx", args=[statement.pk])).content))
    sheet = list(book["Unit costs"].iter_rows(values_only=True))
    assert list(sheet[0]) == STATEMENT_UNIT_COST_HEADER and len(sheet) - 1 == len(unit_costs)
    assert (sheet[UNIT_COSTS_SHOWN + 1][2], sheet[UNIT_COSTS_SHOWN + 1][3]) == (
        first_left["team"],
        first_left["feature"],
    )


def test_a_statement_of_hundreds_of_lines_runs_over_many_pages_with_its_headers(world, approve):
    statement = approve(extra_lines=300)
    pdf, data = _stored(statement)
    reader = _reader(data)
    pages = [_flat(page.extract_text()) for page in reader.pages]

    assert pdf.page_count == len(pages) >= 15
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in text
    lines_pages = [text for text in pages if "Total of 310 lines" in text or "Charge · 310 lines" in text]
    assert lines_pages, "the lines table is in the PDF"
    first = pages.index(next(t for t in pages if "10 Lines" in t))
    last = next(i for i, t in enumerate(pages) if "Total of 310 lines" in t)
    assert last - first >= 8  # 310 lines over many pages
    for text in pages[first : last + 1]:
        # The table's header repeated on each page it runs over, and the running header.
        assert "# Provider, model Team, feature Environment · modality · treatment Quantity Ledger lines Amount" in text
        assert f"CC-110 {statement.cost_center.name} · {MONTH}" in text or text is pages[0]
    # Landscape pages for the lines, portrait for the rest.
    boxes = [(float(page.mediabox.width), float(page.mediabox.height)) for page in reader.pages]
    assert boxes[0][0] < boxes[0][1] and boxes[last][0] > boxes[last][1]
    assert f"Total of 310 lines {money_text(statement.total)}" in pages[last]


def test_the_statement_page_shows_the_pdf_and_serves_it_to_those_who_see_the_statement(world, approve):
    statement = approve()
    pdf, data = _stored(statement)
    url = reverse("statement-pdf", args=[statement.pk])

    member = Client()
    member.force_login(world["member"])  # a member of CC-110
    page = member.get(reverse("statement", args=[statement.pk])).content.decode()
    assert "Download the signed PDF" in page and pdf.sha256 in page and url in page
    response = member.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert f'filename="statement-CC-110-{MONTH}.pdf"' in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == data

    other = Client()
    other.force_login(world["other_member"])  # a member of CC-120 only
    assert other.get(url).status_code == 404


def test_without_a_signing_certificate_the_page_says_why_and_approval_stands(world, approve, settings):
    settings.CHARGEBACK_SIGNING_P12 = settings.MEDIA_ROOT / "no-such.p12"
    statement = approve()

    assert statement.status == "approved"
    pdf = StatementPdf.objects.get(statement=statement)
    assert pdf.status == StatementPdfStatus.FAILED and "No signing certificate at" in pdf.error
    client = Client()
    client.force_login(world["approver"])
    page = client.get(reverse("statement", args=[statement.pk])).content.decode()
    assert "Failed" in page and "No signing certificate at" in page
    assert client.get(reverse("statement-pdf", args=[statement.pk])).status_code == 404


def test_approving_the_month_makes_one_pdf_per_statement(world, statement_pdfs, django_capture_on_commit_callbacks):
    statements_build(period=MONTH, actor=world["analyst"])
    submitted = statements_submit_period(period=MONTH, actor=world["analyst"])
    with django_capture_on_commit_callbacks(execute=True):
        statements_approve_period(period=MONTH, actor=world["approver"])
    pdfs = StatementPdf.objects.filter(statement__period=str(MONTH))
    assert pdfs.count() == len(submitted) > 1
    assert set(pdfs.values_list("status", flat=True)) == {StatementPdfStatus.READY}


# transaction=True: the worker reads the committed approval. serialized_rollback: the unit
# catalog (seeded by a migration) is back for the tests that follow.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_approval_queues_the_pdf_on_commit_and_a_real_worker_makes_it(
    tmp_path, django_user_model, settings, signing_certificate, celery_worker
):
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    settings.CHARGEBACK_STATEMENT_PDF_ON_APPROVAL = True
    settings.MEDIA_ROOT = celery_worker.media_root  # read what the worker stored
    world = close_world(tmp_path, django_user_model)
    statements_build(period=MONTH, actor=world["analyst"])
    statement = statement_submit(
        statement=Statement.objects.get(period=str(MONTH), cost_center__code="CC-110"), actor=world["analyst"]
    )

    statement = statement_approve(statement=statement, actor=world["approver"])

    deadline = time.monotonic() + WORKER_TIMEOUT
    pdf = StatementPdf.objects.get(statement=statement)
    while pdf.status == StatementPdfStatus.PENDING and time.monotonic() < deadline:
        time.sleep(0.5)
        pdf.refresh_from_db()
    assert pdf.status == StatementPdfStatus.READY, f"{pdf.status}: {pdf.error}\n{celery_worker.log_tail()}"
    pdf, data = _stored(statement)
    assert pdf.sha256 == hashlib.sha256(data).hexdigest()
    assert json.loads(_reader(data).attachments[STATEMENT_PDF_IDENTITY_FILE][0])["content_hash"] == (
        statement.content_hash
    )
    assert money_text(statement.total) in _flat(_text(_reader(data)))
