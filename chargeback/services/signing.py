"""Signed statement PDFs: the organization's signature on a statement PDF (PAdES baseline
B-B, with pyHanko), the demo's certificate authority, and the verification anyone may run
on a PDF that has travelled.

The signing certificate comes from settings: a PKCS#12 file (CHARGEBACK_SIGNING_P12) and
its passphrase (CHARGEBACK_SIGNING_PASSPHRASE, from the environment); the organization's CA
(CHARGEBACK_SIGNING_CA, PEM) is the one trust root verification accepts.
"""

from __future__ import annotations

import datetime
import io
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from asn1crypto import parser as asn1_parser
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.conf import settings
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.util import get_pyca_cryptography_hash
from pypdf import PdfReader

from allocation.access import EVERY_COST_CENTER, CostCenterScope
from chargeback.choices import SIGNED_STATUSES, STATEMENT_PDF_IDENTITY_FILE, StatementStatus
from chargeback.models import Statement
from chargeback.models.statements import LIVE_STATEMENTS
from chargeback.services.statements import statement_content_hash
from pricing.errors import ApplicationError

__all__ = [
    "SIGNATURE_FIELD",
    "Finding",
    "PdfVerification",
    "SigningCertificate",
    "SigningNotConfigured",
    "pdf_sign",
    "pdf_verify",
    "signing_certificate_make",
]

# The name of the signature field the organization's signature goes in.
SIGNATURE_FIELD = "ChargebackSignature"
SIGNATURE_REASON = "Approved chargeback statement"
_KEY_BITS = 3072  # RSA size current guidance asks for a signature kept for years
_CA_VALID_DAYS = 10 * 365
_SIGNER_VALID_DAYS = 3 * 365


class SigningNotConfigured(ApplicationError):
    """No usable signing certificate: the file is missing, unreadable or its passphrase wrong."""

    code = "signing_not_configured"
    http_status = 503


class _KeptKeySigner(signers.SimpleSigner):
    """pyHanko's SimpleSigner, holding its private key loaded: SimpleSigner parses the key
    at every signature, and cryptography's check of an RSA key on loading takes ~0.4 s,
    twice a PDF (the size estimate signs too), which would dominate a month's 200 PDFs."""

    _loaded_key = None
    # The room the first signature took in /Contents: every later one by this signer is the
    # same size, so pyHanko's estimate (a whole dry-run signature, ~0.1 s) is made once.
    reserved: int | None = None

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm).signature_algo
        if mechanism != "rsassa_pkcs1v15":
            return super().sign_raw(data, digest_algorithm)
        if self._loaded_key is None:
            self._loaded_key = serialization.load_der_private_key(self.signing_key.dump(), password=None)
        return self._loaded_key.sign(data, PKCS1v15(), get_pyca_cryptography_hash(digest_algorithm))


@lru_cache(maxsize=4)
def _signer_loaded(path: str, modified_ns: int, passphrase: str) -> _KeptKeySigner:
    # Keyed on the file's mtime so a replaced certificate is picked up without a restart.
    try:
        data = Path(path).read_bytes()
        loaded = signers.SimpleSigner.load_pkcs12_data(data, other_certs=[], passphrase=passphrase.encode() or None)
    except (OSError, ValueError) as exc:
        raise SigningNotConfigured(
            f"The signing certificate {path} cannot be read ({type(exc).__name__}: {exc}); "
            "check the file and CHARGEBACK_SIGNING_PASSPHRASE.",
            extra={"path": path},
        ) from exc
    return _KeptKeySigner(
        signing_key=loaded.signing_key, signing_cert=loaded.signing_cert, cert_registry=loaded.cert_registry
    )


def _signer() -> _KeptKeySigner:
    path = Path(settings.CHARGEBACK_SIGNING_P12)
    if not path.is_file():
        raise SigningNotConfigured(
            f"No signing certificate at {path}: set CHARGEBACK_SIGNING_P12 and CHARGEBACK_SIGNING_PASSPHRASE "
            "to the organization's PKCS#12 file, or run `python manage.py make_signing_certificate` for a demo one.",
            extra={"path": str(path)},
        )
    return _signer_loaded(str(path), path.stat().st_mtime_ns, settings.CHARGEBACK_SIGNING_PASSPHRASE)


def pdf_sign(pdf: bytes) -> bytes:
    """The PDF with the organization's signature appended (PAdES baseline B-B, SHA-256), as an
    incremental update: the signed bytes are the original file, untouched. Raises
    SigningNotConfigured when no certificate is configured."""
    signer = _signer()
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    metadata = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        subfilter=SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason=SIGNATURE_REASON,
    )
    out = signers.sign_pdf(writer, metadata, signer=signer, bytes_reserved=signer.reserved).getvalue()
    if signer.reserved is None:
        start = out.rindex(b"/Contents <") + len(b"/Contents <")
        signer.reserved = out.index(b">", start) - start  # pyHanko counts it in hex digits
    return out


# --- the demo's certificate authority ---------------------------------------------------


@dataclass(frozen=True)
class SigningCertificate:
    """Where a made certificate went: the CA's certificate (PEM) and the signer's PKCS#12."""

    ca_path: Path
    p12_path: Path
    subject: str
    not_after: datetime.datetime


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


def signing_certificate_make(
    *,
    organization: str,
    ca_path: Path,
    p12_path: Path,
    passphrase: str,
    now: datetime.datetime | None = None,
) -> SigningCertificate:
    """A self-signed CA for `organization` and a document-signing certificate it issues,
    written as `ca_path` (PEM) and `p12_path` (PKCS#12 with key, certificate and CA,
    encrypted with `passphrase`). For the demo and tests; production uses its own CA."""
    now = now or datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    ca_name = _name(f"{organization} Chargeback CA", organization)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    signer_name = _name(f"{organization} Finance", organization)
    not_after = now + datetime.timedelta(days=_SIGNER_VALID_DAYS)
    signer_cert = (
        x509.CertificateBuilder()
        .subject_name(signer_name)
        .issuer_name(ca_name)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,  # non-repudiation: a sign-off, not a login
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, p12_path = Path(ca_path), Path(p12_path)
    for path in (ca_path, p12_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    p12 = pkcs12.serialize_key_and_certificates(
        name=f"{organization} Finance".encode(),
        key=signer_key,
        cert=signer_cert,
        cas=[ca_cert],
        encryption_algorithm=encryption,
    )
    p12_path.unlink(missing_ok=True)
    p12_path.touch(mode=0o600)  # the key is a secret: readable by its owner only
    p12_path.write_bytes(p12)
    return SigningCertificate(
        ca_path=ca_path, p12_path=p12_path, subject=signer_name.rfc4514_string(), not_after=not_after
    )


# --- verification ------------------------------------------------------------------------

# A PDF's header may follow up to 1,024 bytes of anything (ISO 32000-2, 7.5.2).
_HEADER_WINDOW = 1024


@dataclass(frozen=True)
class Finding:
    """One thing verification checked: passed (True), failed (False) or could not check (None)."""

    ok: bool | None
    text: str

    @property
    def mark(self) -> str:
        return {True: "ok", False: "FAIL", None: "--"}[self.ok]


@dataclass
class PdfVerification:
    """What a PDF proves: whether it is signed, whether the signed bytes are the whole file
    and unchanged, by whom, whether that certificate is the organization's, and whether the
    statement it carries is the approved statement in the database."""

    is_pdf: bool = False  # it has a PDF header
    readable: bool = False  # and parses as one
    signed: bool = False
    intact: bool = False  # the digest matches and the signature covers the entire file
    trusted: bool = False  # the signer's certificate chains to the organization's CA
    signer: str = ""
    signed_at: datetime.datetime | None = None
    identity: dict | None = None
    statement: Any = None  # the approved Statement it names, if the actor may see it
    matches_statement: bool = False
    # The revision that replaced it, when the statement was reopened after sign-off: the
    # signature still holds, but the figures are no longer the ones in force.
    superseded_by: Any = None
    findings: list[Finding] = field(default_factory=list)
    verdict: str = ""

    @property
    def valid(self) -> bool:
        return self.readable and self.signed and self.intact and self.trusted and self.matches_statement

    def found(self, ok: bool | None, text: str) -> None:
        self.findings.append(Finding(ok, text))


def _organization_ca() -> list:
    path = Path(settings.CHARGEBACK_SIGNING_CA)
    try:
        return [load_cert_from_pemder(str(path))]
    except (OSError, ValueError):
        return []


def _subject(name) -> str:
    parts = name.native
    return (
        ", ".join(str(parts[key]) for key in ("common_name", "organization_name") if parts.get(key))
        or name.human_friendly
    )


def _container_untouched(signature) -> str:
    """Why the signature container itself was changed, or "". The digest covers every byte
    but /Contents, and pyHanko only reads from /Contents what it needs: the CMS (up to
    its DER length) and the signer's certificate. A changed byte in the zero padding or in
    another certificate carried along (the CA's copy) would pass; these checks catch it."""
    raw = bytes(signature.sig_object["/Contents"])
    header, body, _ = asn1_parser.parse(raw)[3:6]
    if raw[len(header) + len(body) :].strip(b"\x00"):
        return "bytes follow the signature inside its container"
    bag = [choice.chosen for choice in signature.signed_data["certificates"] if choice.name == "certificate"]
    certificates = [x509.load_der_x509_certificate(cert.dump()) for cert in bag]
    issuers = certificates + [x509.load_der_x509_certificate(root.dump()) for root in _organization_ca()]
    for certificate in certificates:
        candidates = [issuer for issuer in issuers if issuer.subject == certificate.issuer]
        if not any(_issued_by(certificate, issuer) for issuer in candidates):
            return f"the certificate {certificate.subject.rfc4514_string()} it carries is not intact"
    return ""


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _signature_check(result: PdfVerification, data: bytes) -> None:
    try:
        signatures = PdfFileReader(io.BytesIO(data), strict=False).embedded_signatures
    except Exception as exc:  # a hostile or broken file may fail anywhere in the parser
        result.found(False, f"The file claims to be a PDF but cannot be read as one ({type(exc).__name__}: {exc}).")
        return
    result.readable = True
    if not signatures:
        result.found(False, "The PDF carries no signature.")
        return
    result.signed = True
    # The organization's signature is the last one: anything after it would be a change.
    signature = signatures[-1]
    roots = _organization_ca()
    if not roots:
        result.found(None, f"The organization's CA ({settings.CHARGEBACK_SIGNING_CA}) is not configured here.")
    try:
        status = validate_pdf_signature(signature, ValidationContext(trust_roots=roots))
    except Exception as exc:  # a damaged signature container fails inside pyHanko's parsers
        result.found(False, f"The signature is damaged and cannot be checked: {type(exc).__name__}: {exc}.")
        return
    result.signer = _subject(status.signing_cert.subject)
    result.signed_at = status.signer_reported_dt
    whole = status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    try:
        container_changed = _container_untouched(signature)
    except Exception as exc:  # the same hostile bytes, read by asn1crypto and cryptography
        container_changed = f"it cannot be read ({type(exc).__name__})"
    result.intact = bool(status.intact and status.valid and whole and not container_changed)
    if container_changed:
        result.found(False, f"The signature container was changed after signing: {container_changed}.")
        result.found(None, "The signing certificate was not checked: a changed signature proves nothing.")
        return
    if not (status.intact and status.valid):
        result.found(False, "The signed content does not match its signature: the file was changed after signing.")
        result.found(None, "The signing certificate was not checked: a broken signature proves nothing.")
        return
    elif not whole:
        result.found(False, "The signature does not cover the whole file: content was added after signing.")
    else:
        result.found(True, f"The signature is intact and covers the whole file (signed by {result.signer}).")
    if roots:
        if status.trusted:
            result.trusted = True
            result.found(True, "The signing certificate is the organization's (it chains to the organization's CA).")
        else:
            result.found(False, f"The signing certificate ({result.signer}) is not issued by the organization's CA.")


def _identity_read(result: PdfVerification, data: bytes) -> None:
    try:
        attachments = PdfReader(io.BytesIO(data), strict=False).attachments
        contents = attachments.get(STATEMENT_PDF_IDENTITY_FILE) or []
    except Exception as exc:  # pypdf's errors on a broken file are many and untyped
        result.found(False, f"The embedded files cannot be read: {type(exc).__name__}.")
        return
    if not contents:
        result.found(False, f"The PDF carries no statement identity ({STATEMENT_PDF_IDENTITY_FILE}).")
        return
    try:
        identity = json.loads(contents[0])
        if not isinstance(identity, dict):
            raise ValueError("not an object")
        identity = {key: identity.get(key) for key in ("statement_id", "cost_center", "period", "content_hash")}
        if type(identity["statement_id"]) is not int or not all(
            isinstance(identity[key], str) for key in ("cost_center", "period", "content_hash")
        ):
            raise ValueError("a field is missing or of the wrong type")
    except ValueError:
        result.found(False, f"The embedded {STATEMENT_PDF_IDENTITY_FILE} is not a statement identity.")
        return
    result.identity = identity
    result.found(
        True,
        f"It carries statement #{identity['statement_id']}: {identity['cost_center']} {identity['period']}, "
        f"content SHA-256 {identity['content_hash']}.",
    )


def _statement_compare(result: PdfVerification, scope: CostCenterScope) -> None:
    identity = result.identity
    statement_id = identity["statement_id"]
    statements = scope.filter(Statement.objects.select_related("cost_center", "run", "approved_by", "reopened_by"))
    # A bigint column: an id past its range is no statement rather than a database error.
    # A reopened revision was signed off too: its PDF is checked, and said to be superseded.
    signed = (*SIGNED_STATUSES, StatementStatus.SUPERSEDED)
    statement = statements.filter(pk=statement_id, status__in=signed).first() if 0 < statement_id < 2**63 else None
    if statement is None:
        # The same words whether it does not exist or is not the actor's to see.
        result.found(False, f"The database holds no approved statement #{statement_id} that you may see.")
        return
    result.statement = statement
    claimed = (identity["cost_center"], identity["period"], identity["content_hash"])
    stored = (statement.cost_center.code, statement.period, statement.content_hash)
    recomputed = statement_content_hash(statement)
    if claimed != stored:
        result.found(
            False,
            f"It does not match approved statement #{statement.pk} ({stored[0]} {stored[1]}, "
            f"content SHA-256 {stored[2]}).",
        )
    elif recomputed != statement.content_hash:
        result.found(False, f"Statement #{statement.pk}'s lines in the database no longer give its approved hash.")
    else:
        result.matches_statement = True
        approver = statement.approved_by.get_full_name() or statement.approved_by.get_username()
        result.found(
            True,
            f"It matches approved statement #{statement.pk} ({stored[0]} {stored[1]}), "
            f"approved by {approver} on {statement.approved_at:%Y-%m-%d %H:%M} UTC.",
        )
        if statement.status == StatementStatus.SUPERSEDED:
            _superseded_note(result, statement, statements)


def _superseded_note(result: PdfVerification, statement: Statement, statements) -> None:
    """The statement was reopened after sign-off: name the revision in force now."""
    live = statements.filter(LIVE_STATEMENTS, period=statement.period, cost_center=statement.cost_center_id).first()
    result.superseded_by = live
    by = statement.reopened_by.get_full_name() or statement.reopened_by.get_username()
    now = (
        f"revision {live.revision} (statement #{live.pk}, {live.get_status_display().lower()})"
        if live
        else "a revision"
    )
    result.found(
        False,
        f"Statement #{statement.pk} (revision {statement.revision}) was reopened by {by} on "
        f"{statement.reopened_at:%Y-%m-%d %H:%M} UTC ({statement.reopen_reason}) and superseded by {now}: "
        "its figures are no longer the ones in force.",
    )


def _verdict(result: PdfVerification) -> str:
    if not result.is_pdf:
        return "NOT A PDF: nothing can be verified."
    if not result.readable:
        return "DAMAGED: the file cannot be read as a PDF; it was changed or broken and proves nothing."
    if not result.signed:
        return "NOT SIGNED: this PDF carries no signature."
    if not result.intact:
        return "TAMPERED: the file was changed after it was signed. Do not rely on it."
    if not result.trusted:
        return (
            f"NOT THE ORGANIZATION'S: signed by {result.signer or 'an unknown signer'}, whose certificate is not ours."
        )
    if result.identity is None:
        return "NOT A STATEMENT: signed by the organization, but it carries no statement identity."
    if result.statement is None:
        return (
            "NOT CONFIRMED: the organization's signature is intact, but the statement it carries is not "
            "an approved statement you may see here."
        )
    if not result.matches_statement:
        return (
            f"DOES NOT MATCH: the organization's signature is intact, but the statement it carries differs from "
            f"approved statement #{result.statement.pk} in the database."
        )
    statement = result.statement
    if result.superseded_by is not None:
        live = result.superseded_by
        return (
            f"VALID SIGNATURE, SUPERSEDED STATEMENT: signed by {result.signer} and unchanged since; it is approved "
            f"statement #{statement.pk} ({statement.cost_center.code} {statement.period}, revision "
            f"{statement.revision}), since reopened and superseded by revision {live.revision} "
            f"(statement #{live.pk}). Rely on revision {live.revision}, not on this PDF."
        )
    return (
        f"VALID: signed by {result.signer} and unchanged since; it is approved statement #{statement.pk} "
        f"({statement.cost_center.code} {statement.period})."
    )


def pdf_verify(data: bytes, *, scope: CostCenterScope = EVERY_COST_CENTER) -> PdfVerification:
    """Verify a statement PDF that has travelled: its signature (intact, whole file, the
    organization's certificate) and the statement it carries against the database. The
    database is searched within `scope`, so a team member learns nothing about statements
    they may not see. Never raises on a bad file: it says what is wrong with it."""
    result = PdfVerification()
    if not data:
        result.found(False, "The file is empty.")
    elif b"%PDF-" not in data[:_HEADER_WINDOW]:
        result.found(False, "The file is not a PDF (it has no PDF header).")
    else:
        result.is_pdf = True
        _signature_check(result, data)
        if result.readable:
            checked = len(result.findings)
            _identity_read(result, data)
            if result.identity is not None:
                _statement_compare(result, scope)
            if not (result.signed and result.intact):
                # What an unsigned or changed file says of itself proves nothing: no tick for it.
                result.findings[checked:] = [
                    Finding(None, f"{finding.text} (Unproven: the signature does not hold.)") if finding.ok else finding
                    for finding in result.findings[checked:]
                ]
    result.verdict = _verdict(result)
    return result
