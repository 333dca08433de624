from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MailerConfig(AppConfig):
    name = "mailer"
    label = "mailer"
    verbose_name = _("Mail queue")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .feedback import connect  # the models it uses are ready only now
        from .signals import batch_queued

        batch_queued.connect(wake_tasks, dispatch_uid="mailer.tasks.wake_for")
        connect()


def wake_tasks(sender: Any, messages: list[Any], using: str, **kwargs: Any) -> None:
    """With MAILER_TASKS_ENQUEUE_ON_COMMIT, enqueue a drain task for mail just queued.

    The Tasks framework is imported only when the setting is on.
    """
    from .conf import settings

    if settings.TASKS_ENQUEUE_ON_COMMIT:
        from .tasks import wake_for

        wake_for(messages, using)
