from django.apps import AppConfig


class ChargebackConfig(AppConfig):
    name = "chargeback"
    verbose_name = "Chargeback"

    def ready(self) -> None:
        # Registers the tasks with Celery in every process (web, command, worker), so that
        # services can queue them by name (pricing.task_queue) without importing them.
        from chargeback import tasks  # noqa: F401
