"""Signed statement PDFs: the organization's PAdES signature (chargeback.services.signing),
checked with pyHanko's own validation API against the test CA; and verification of a PDF
that has travelled (pdf_verify), by the command and the upload page, as finance and as
team members."""

import io
import json
import os
import subprocess
import sys

import pytest
import weasyprint
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils import generic as pdf_generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader, PdfWriter

from chargeback.choices import STATEMENT_PDF_IDENTITY_FILE, STATEMENT_PDF_LINES_FILE
from chargeback.models import Statement
from chargeback.services.signing import (
    SIGNATURE_FIELD,
    SigningNotConfigured,
    pdf_sign,
    pdf_verify,
    signing_certificate_make,
)
from chargeback.services.statement_pdf import statement_pdf_render
from tests.chargeback.close_world import MONTH, close_world
from tests.chargeback.statement_pdf_world import approved_statement


def statement_like_pdf(identity: dict, lines_csv: str = "kind,amount\ncharge,12.34\n") -> bytes:
    """A PDF/A-3b carrying the two files a statement PDF carries, made with WeasyPrint as the
    statement renderer makes it."""
    attachments = [
        weasyprint.Attachment(string=lines_csv, base_url=".", name=STATEMENT_PDF_LINES_FILE),
        weasyprint.Attachment(string=json.dumps(identity), base_url=".", name=STATEMENT_PDF_IDENTITY_FILE),
    ]
    html = f"<h1>Statement {identity.get('cost_center')} {identity.get('period')}</h1><p>Total 12.34</p>"
    return weasyprint.HTML(string=html).write_pdf(pdf_variant="pdf/a-3b", attachments=attachments)


def pyhanko_status(data: bytes, ca_path):
    signature = PdfFileReader(io.BytesIO(data)).embedded_signatures[0]
    context = ValidationContext(trust_roots=[load_cert_from_pemder(str(ca_path))])
    return signature, validate_pdf_signature(signature, context)


def test_signed_pdf_validates_against_the_organization_ca(signing_certificate):
    pdf = statement_like_pdf({"statement_id": 1, "cost_center": "CC-1", "period": "2026-11", "content_hash": "0" * 64})

    signed = pdf_sign(pdf)

    assert signed.startswith(pdf)  # an incremental update: the rendered bytes are untouched
    signature, status = pyhanko_status(signed, signing_certificate.ca_path)
    assert signature.field_name == SIGNATURE_FIELD
    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert (status.intact, status.valid, status.trusted, status.bottom_line) == (True, True, True, True)
    assert status.coverage.name == "ENTIRE_FILE"
    assert status.md_algorithm == "sha256"
    assert status.signing_cert.subject.native["organization_name"] == "Test Org"


def test_signing_without_a_certificate_is_a_clear_error(settings, tmp_path):
    settings.CHARGEBACK_SIGNING_P12 = tmp_path / "nowhere.p12"

    with pytest.raises(SigningNotConfigured, match="No signing certificate at .*nowhere.p12"):
        pdf_sign(b"%PDF-1.7")


def test_a_wrong_passphrase_is_a_clear_error(signing_certificate, settings):
    settings.CHARGEBACK_SIGNING_PASSPHRASE = "not-the-passphrase"

    with pytest.raises(SigningNotConfigured, match="cannot be read"):
        pdf_sign(statement_like_pdf({"statement_id": 1}))


# --- verification ------------------------------------------------------------------------


@pytest.fixture
def world(db, tmp_path, django_user_model, settings, signing_certificate):
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    return close_world(tmp_path, django_user_model)


@pytest.fixture
def statement(world) -> Statement:
    """Search's (CC-110) October statement, signed off."""
    return approved_statement(world, "CC-110")


@pytest.fixture
def signed(statement) -> bytes:
    """Its PDF as the close issues it: rendered, then signed."""
    return pdf_sign(statement_pdf_render(statement))


def identity_of(statement: Statement, **changes) -> dict:
    identity = {
        "statement_id": statement.pk,
        "cost_center": statement.cost_center.code,
        "period": statement.period,
        "content_hash": statement.content_hash,
    }
    return {**identity, **changes}


def test_the_issued_pdf_is_valid_and_names_its_signer_and_statement(signed, statement):
    verification = pdf_verify(signed)

    assert verification.valid, verification.findings
    assert verification.verdict == (
        f"VALID: signed by Test Org Finance, Test Org and unchanged since; "
        f"it is approved statement #{statement.pk} (CC-110 {MONTH})."
    )
    assert (verification.signed, verification.intact, verification.trusted) == (True, True, True)
    assert verification.statement == statement and verification.matches_statement
    assert verification.identity == identity_of(statement)
    assert [finding.ok for finding in verification.findings] == [True, True, True, True]
    assert "approved by fiona" in verification.findings[-1].text


def test_one_byte_changed_anywhere_is_never_valid(signed):
    """A byte flipped at 64 places spread over the file, from the header to the trailer,
    including the signature container the digest does not cover."""
    contents_at = signed.index(b"/Contents <") + len(b"/Contents <")
    places = sorted({*range(0, len(signed), max(1, len(signed) // 60)), len(signed) - 1, contents_at + 20})
    padding_at = signed.index(b"0000000000>", contents_at)  # the zeros after the CMS in /Contents
    places.append(padding_at)
    verdicts = {}
    for place in places:
        tampered = bytearray(signed)
        tampered[place] = ord("1") if place == padding_at else tampered[place] ^ 0x01
        verification = pdf_verify(bytes(tampered))
        assert not verification.valid, f"byte {place} of {len(signed)} changed, still valid"
        assert not verification.verdict.startswith("VALID")
        verdicts[place] = verification.verdict.split(":")[0]
    # Most flips break the digest; the rest break the file's structure or its header.
    assert set(verdicts.values()) <= {"TAMPERED", "DAMAGED", "NOT A PDF", "NOT SIGNED"}
    assert list(verdicts.values()).count("TAMPERED") > len(places) / 2


def test_a_pdf_resaved_by_another_tool_is_reported_as_changed(signed):
    rewritten = io.BytesIO()
    PdfWriter(clone_from=PdfReader(io.BytesIO(signed))).write(rewritten)
    resaved = rewritten.getvalue()
    assert PdfReader(io.BytesIO(resaved)).attachments  # still a PDF carrying its files

    verification = pdf_verify(resaved)

    assert not verification.valid and not verification.intact
    assert verification.verdict.startswith("TAMPERED")


def test_content_added_after_signing_is_reported(signed):
    """An incremental update after the signature (a note, a page) leaves the signed bytes
    intact but not the whole file."""
    writer = IncrementalPdfFileWriter(io.BytesIO(signed))
    writer.root["/Lang"] = pdf_generic.TextStringObject("fr")
    writer.update_root()
    appended = io.BytesIO()
    writer.write(appended)

    verification = pdf_verify(appended.getvalue())

    assert not verification.valid and verification.verdict.startswith("TAMPERED")
    assert "does not cover the whole file" in verification.findings[0].text
    # What it says of itself is shown, unproven, never ticked.
    assert [finding.ok for finding in verification.findings] == [False, True, None, None]


def test_a_signature_by_another_certificate_is_intact_but_not_the_organizations(
    statement, settings, tmp_path, signing_certificate
):
    other = signing_certificate_make(
        organization="Mallory Ltd", ca_path=tmp_path / "ca.pem", p12_path=tmp_path / "signer.p12", passphrase="x"
    )
    settings.CHARGEBACK_SIGNING_P12, settings.CHARGEBACK_SIGNING_PASSPHRASE = other.p12_path, "x"
    forged = pdf_sign(statement_pdf_render(statement))
    settings.CHARGEBACK_SIGNING_P12 = signing_certificate.p12_path  # verification trusts the organization's CA

    verification = pdf_verify(forged)

    assert verification.intact and not verification.trusted and not verification.valid
    assert verification.signer == "Mallory Ltd Finance, Mallory Ltd"
    assert verification.verdict == (
        "NOT THE ORGANIZATION'S: signed by Mallory Ltd Finance, Mallory Ltd, whose certificate is not ours."
    )


def test_a_signed_pdf_whose_statement_hash_differs_from_the_database_is_reported(statement):
    pdf = pdf_sign(statement_like_pdf(identity_of(statement, content_hash="f" * 64)))

    verification = pdf_verify(pdf)

    assert verification.intact and verification.trusted and not verification.valid
    assert verification.verdict.startswith("DOES NOT MATCH")
    assert f"does not match approved statement #{statement.pk}" in verification.findings[-1].text
    assert statement.content_hash in verification.findings[-1].text


def test_a_statement_that_is_not_approved_does_not_verify(statement):
    draft = Statement.objects.get(period=str(MONTH), cost_center__code="CC-120")
    pdf = pdf_sign(statement_like_pdf(identity_of(draft, content_hash="a" * 64)))

    verification = pdf_verify(pdf)

    assert not verification.valid and verification.statement is None
    assert verification.verdict.startswith("NOT CONFIRMED")
    assert verification.findings[-1].text == f"The database holds no approved statement #{draft.pk} that you may see."


@pytest.mark.parametrize(
    ("data", "verdict"),
    [
        (b"", "NOT A PDF"),
        (b"PK\x03\x04 a zip file, not a PDF", "NOT A PDF"),
        (b"%PDF-1.7\n" + b"\x00" * 100, "DAMAGED"),
    ],
)
def test_a_file_that_is_not_a_signed_pdf_gets_a_clear_answer(db, signing_certificate, data, verdict):
    verification = pdf_verify(data)

    assert not verification.valid and verification.verdict.startswith(verdict)


def test_an_unsigned_statement_pdf_is_reported_as_unsigned(statement):
    verification = pdf_verify(statement_pdf_render(statement))

    assert not verification.valid and verification.verdict == "NOT SIGNED: this PDF carries no signature."


# --- the command --------------------------------------------------------------------------


def test_the_command_prints_the_findings_and_exits_zero_only_when_valid(signed, statement, tmp_path, capsys):
    good = tmp_path / "good.pdf"
    good.write_bytes(signed)
    call_command("verify_statement_pdf", str(good))
    out = capsys.readouterr().out
    assert out.startswith(f"{good}: VALID: signed by Test Org Finance, Test Org")
    assert out.count("[  ok]") == 4

    bad = tmp_path / "bad.pdf"
    tampered = bytearray(signed)
    tampered[len(signed) // 4] ^= 0x01
    bad.write_bytes(bytes(tampered))
    with pytest.raises(CommandError) as refused:
        call_command("verify_statement_pdf", str(bad))
    assert refused.value.returncode == 1
    assert f"{bad}: TAMPERED" in capsys.readouterr().out

    with pytest.raises(CommandError, match="cannot be read"):
        call_command("verify_statement_pdf", str(tmp_path / "missing.pdf"))


def test_the_command_as_a_process_exits_with_its_verdict(signed, tmp_path, settings):
    """Run as an operator would, in a process of its own on the test database: exit codes."""
    good, bad = tmp_path / "good.pdf", tmp_path / "bad.pdf"
    good.write_bytes(signed)
    bad.write_bytes(b"not a pdf")
    env = {
        **os.environ,
        "CHARGEBACK_SIGNING_CA": str(settings.CHARGEBACK_SIGNING_CA),
        "DATABASE_URL": "sqlite:///nowhere.sqlite3",  # a file that is not a PDF needs no database
    }
    run = subprocess.run(
        [sys.executable, "manage.py", "verify_statement_pdf", str(bad)],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1 and "NOT A PDF" in run.stdout


def test_make_signing_certificate_writes_a_ca_and_a_signer_once(tmp_path, settings, capsys):
    call_command("make_signing_certificate", "--organization", "Acme", "--directory", str(tmp_path))
    assert "Acme Finance" in capsys.readouterr().out
    ca, p12 = tmp_path / "ca.pem", tmp_path / "signer.p12"
    assert ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert p12.stat().st_mode & 0o077 == 0  # the key is its owner's alone
    made = p12.read_bytes()
    call_command("make_signing_certificate", "--directory", str(tmp_path), "--if-missing")
    with pytest.raises(CommandError, match="exists"):
        call_command("make_signing_certificate", "--directory", str(tmp_path))
    assert p12.read_bytes() == made

    settings.CHARGEBACK_SIGNING_P12, settings.CHARGEBACK_SIGNING_CA = p12, ca
    signed = pdf_sign(statement_like_pdf({"statement_id": 1}))
    _, status = pyhanko_status(signed, ca)
    assert status.bottom_line and status.signing_cert.subject.native["common_name"] == "Acme Finance"


# --- the page ----------------------------------------------------------------------------


def upload(client: Client, data: bytes, name: str = "statement.pdf"):
    return client.post(reverse("pdf-verify"), {"pdf": SimpleUploadedFile(name, data, "application/pdf")})


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_finance_uploads_a_signed_pdf_and_sees_it_valid(world, signed, statement):
    page = client_of(world["analyst"])
    assert page.get(reverse("pdf-verify")).status_code == 200

    answer = upload(page, signed)

    body = answer.content.decode()
    assert answer.status_code == 200
    assert "VALID: signed by Test Org Finance, Test Org and unchanged since" in body
    assert reverse("statement", args=[statement.pk]) in body and statement.content_hash in body
    assert "approved by fiona" in body


def test_a_team_member_verifies_their_own_statement_but_learns_nothing_of_anothers(world, signed, statement):
    own = upload(client_of(world["member"]), signed).content.decode()
    assert "VALID: signed by" in own and reverse("statement", args=[statement.pk]) in own

    other = upload(client_of(world["other_member"]), signed).content.decode()  # support's member
    assert "VALID" not in other
    assert f"The database holds no approved statement #{statement.pk} that you may see." in other
    assert reverse("statement", args=[statement.pk]) not in other and "fiona" not in other
    # The same words as for a statement that does not exist: no way to probe which ids do.
    missing = pdf_sign(statement_like_pdf(identity_of(statement, statement_id=987654)))
    assert (
        "no approved statement #987654 that you may see" in upload(client_of(world["member"]), missing).content.decode()
    )


def test_the_page_tells_a_tampered_file_and_a_non_pdf_without_a_server_error(world, signed):
    page = client_of(world["member"])
    tampered = bytearray(signed)
    tampered[len(tampered) // 3] ^= 0x01

    assert "TAMPERED" in upload(page, bytes(tampered)).content.decode()
    not_pdf = upload(page, b"\x89PNG\r\n\x1a\n an image", "photo.png")
    assert not_pdf.status_code == 200 and "NOT A PDF" in not_pdf.content.decode()


def test_the_page_refuses_a_file_over_the_limit_and_a_missing_file(world, settings):
    settings.CHARGEBACK_VERIFY_MAX_BYTES = 1024
    page = client_of(world["member"])

    too_big = upload(page, b"%PDF-1.7\n" + b" " * 2000)
    assert too_big.status_code == 400 and "the limit is 1.0\xa0KB" in too_big.content.decode()
    missing = page.post(reverse("pdf-verify"), {})
    assert missing.status_code == 400 and "field-error" in missing.content.decode(), missing.content.decode()
