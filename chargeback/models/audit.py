"""The audit trail of the close: one row per state change, written by the service that
makes the change, in the same transaction (never by signals)."""

from django.conf import settings
from django.db import models

__all__ = ["AuditEvent"]


class AuditEvent(models.Model):
    """Who changed what, when, from which request, and the object before and after."""

    subject = models.CharField(max_length=32, help_text="period, statement, dispute or allocation_run")
    subject_id = models.CharField(max_length=32, help_text="The subject's id (a period is its YYYY-MM)")
    action = models.CharField(max_length=48)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_name = models.CharField(max_length=150, help_text="Kept as it was, should the user be renamed")
    request_id = models.CharField(max_length=64, blank=True, help_text="Empty for a command or a task")
    reason = models.TextField(blank=True)
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["subject", "subject_id"], name="audit_event_subject")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name}: {self.subject} {self.subject_id} {self.action}"
