"""Answers to API writes sent with an `Idempotency-Key`, kept so that a retry of the same
write answers as the first did instead of doing it twice."""

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

__all__ = ["IdempotencyKey"]


class IdempotencyKey(models.Model):
    """One actor's key and the answer its first write got. Keys are per actor: two
    clients choosing the same key never see each other's answers."""

    actor = models.CharField(max_length=64, help_text="user:<id> or token:<id>")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the method, path and body")
    # 0 while the first write runs: only its own transaction sees the row then.
    status_code = models.PositiveSmallIntegerField(default=0)
    body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["actor", "key"], name="idempotency_key_unique_per_actor")]

    def __str__(self) -> str:
        return f"{self.actor} {self.key}: {self.method} {self.path} → {self.status_code}"
