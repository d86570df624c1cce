"""Celery tasks of the finance side: thin callers of services.

Each takes ids, loads rows and calls one service; services queue them by name through
`pricing.task_queue`, never by importing this module.
"""

from celery import shared_task

from chargeback.models import Statement
from chargeback.services.statement_pdf import statement_pdf_issue

__all__ = ["statement_pdf_issue_task"]


# A 20-page statement renders and signs in seconds; the limit only stops a stuck render.
@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def statement_pdf_issue_task(statement_id: int, force: bool = False) -> dict:
    """Render, sign and store an approved statement's PDF. Idempotent: a ready PDF is left
    alone unless forced; a refusal or failure is recorded on the PDF's row, not retried
    (the page shows it and a re-issue is one call)."""
    pdf = statement_pdf_issue(Statement.objects.get(pk=statement_id), force=force)
    return {"statement": statement_id, "status": pdf.status, "sha256": pdf.sha256, "pages": pdf.page_count}
