# Converts what django-mailer stored (base64 pickles) into our JSON format, in
# batches, and gives the queue columns added in 0008 their values. On a new
# database there is nothing to convert and this does nothing.
from django.db import migrations
from django.utils import timezone

BATCH = 500


def _batches(queryset):
    last = 0
    while True:
        rows = list(queryset.filter(pk__gt=last).order_by("pk")[:BATCH])
        if not rows:
            return
        yield rows
        last = rows[-1].pk


def convert_messages(apps, schema_editor):
    from mailer import legacy

    Message = apps.get_model("mailer", "Message")
    db = schema_editor.connection.alias
    now = timezone.now()
    pending = Message.objects.using(db).filter(due_at__isnull=True, status="queued")
    for rows in _batches(pending):
        for row in rows:
            if row.priority == 4:  # django-mailer's "deferred": now a state, retried when due
                row.status, row.priority, row.due_at = "deferred", 2, now
            else:
                row.due_at = row.when_added
            if legacy.is_legacy(row.message_data):
                try:
                    row.message_data = legacy.convert(row.message_data)
                except Exception as error:  # kept, visible, never sent: it cannot be read
                    row.status, row.due_at = "failed", None
                    row.last_reply = f"django-mailer data could not be converted: {error!r}"[:2000]
        Message.objects.using(db).bulk_update(
            rows, ["message_data", "status", "priority", "due_at", "last_reply"]
        )


def convert_logs(apps, schema_editor):
    from mailer import legacy

    MessageLog = apps.get_model("mailer", "MessageLog")
    db = schema_editor.connection.alias
    logged = (
        MessageLog.objects.using(db).exclude(message_data__isnull=True).exclude(message_data="")
    )
    for rows in _batches(logged.only("pk", "message_data")):
        changed = []
        for row in rows:
            if legacy.is_legacy(row.message_data):
                try:
                    row.message_data = legacy.convert(row.message_data)
                except Exception:
                    row.message_data = None  # unreadable: the log row itself is kept
                changed.append(row)
        if changed:
            MessageLog.objects.using(db).bulk_update(changed, ["message_data"])


class Migration(migrations.Migration):
    atomic = False  # each batch commits on its own: a big queue does not hold one long lock

    dependencies = [("mailer", "0008_queue_schema")]

    operations = [
        migrations.RunPython(convert_messages, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(convert_logs, migrations.RunPython.noop, elidable=True),
    ]
