"""What every upload (a page's form, an API serializer) checks of a file before any
service keeps it."""

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

__all__ = ["FILE_NAME_TOO_LONG", "UPLOAD_NAME_MAX_BYTES", "validate_upload_name"]

FILE_NAME_TOO_LONG = "file_name_too_long"
# An upload is kept as `batch-<id>-<name>`, and a file system holds 255 bytes a name:
# 200 leaves room for the prefix. Bytes, not characters: a name in Greek or emoji takes
# two to four a character.
UPLOAD_NAME_MAX_BYTES = 200


def validate_upload_name(uploaded: UploadedFile) -> None:
    """Refuse a file whose name the file system could not hold beside its batch id."""
    name = uploaded.name or ""
    size = len(name.encode("utf-8"))
    if size > UPLOAD_NAME_MAX_BYTES:
        raise ValidationError(
            "The file name is %(size)d bytes long; rename the file to at most %(limit)d bytes "
            "(as many plain letters) and upload it again.",
            code=FILE_NAME_TOO_LONG,
            params={"size": size, "limit": UPLOAD_NAME_MAX_BYTES},
        )
