"""Signed statement PDFs: the organization's PAdES signature (chargeback.services.signing),
checked with pyHanko's own validation API against the test CA."""

import io
import json

import pytest
import weasyprint
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from chargeback.choices import STATEMENT_PDF_IDENTITY_FILE, STATEMENT_PDF_LINES_FILE
from chargeback.services.signing import SIGNATURE_FIELD, SigningNotConfigured, pdf_sign


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
