from django.apps import AppConfig


class AllocationConfig(AppConfig):
    name = "allocation"
    verbose_name = "Allocation"

    def ready(self) -> None:
        # Registers the tasks with Celery in every process (web, command, worker), so that
        # services can queue them by name (pricing.task_queue) without importing them.
        from allocation import tasks  # noqa: F401
