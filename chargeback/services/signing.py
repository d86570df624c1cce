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
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.conf import settings
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from pricing.errors import ApplicationError

__all__ = [
    "SIGNATURE_FIELD",
    "SigningCertificate",
    "SigningNotConfigured",
    "pdf_sign",
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

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm).signature_algo
        if mechanism != "rsassa_pkcs1v15":
            return super().sign_raw(data, digest_algorithm)
        if self._loaded_key is None:
            self._loaded_key = serialization.load_der_private_key(self.signing_key.dump(), password=None)
        return self._loaded_key.sign(data, PKCS1v15(), get_pyca_cryptography_hash(digest_algorithm))


@lru_cache(maxsize=4)
def _signer_loaded(path: str, modified_ns: int, passphrase: str) -> signers.SimpleSigner:
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


def _signer() -> signers.SimpleSigner:
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
    out = signers.sign_pdf(writer, metadata, signer=signer)
    return out.getvalue()


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
