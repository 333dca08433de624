from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from mailer.conf import settings


class MailerConfig(AppConfig):
    name = "mailer"
    label = "mailer"
    verbose_name = _("Mail queue")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from mailer import checks  # noqa: F401  (app loading: registers the system checks)
        from mailer.feedback import connect  # app loading: the models it writes are ready now
        from mailer.signals import batch_queued  # app loading: ready() is where apps connect

        batch_queued.connect(wake_tasks, dispatch_uid="mailer.tasks.wake_for")
        connect()


def wake_tasks(sender: Any, messages: list[Any], using: str, **kwargs: Any) -> None:
    """With MAILER_TASKS_ENQUEUE_ON_COMMIT, enqueue a drain task for mail just queued.

    The Tasks framework is imported only when the setting is on.
    """
    if settings.TASKS_ENQUEUE_ON_COMMIT:
        from mailer.tasks import wake_for  # optional: imports the Tasks framework

        wake_for(messages, using)
