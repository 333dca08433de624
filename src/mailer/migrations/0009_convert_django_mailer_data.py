# Converts what django-mailer stored (base64 pickles) into our JSON format, in
# batches, and gives the queue columns added in 0008 their values. On a new
# database there is nothing to convert and this does nothing.
#
# Each batch is read with one query and written in one short transaction, row by
# row: one UPDATE holding a whole batch of messages (attachments included) could
# exceed the server's packet limit (MariaDB's max_allowed_packet). A batch that
# committed is not converted again if the migration is interrupted and re-run.
from django.db import migrations, transaction
from django.utils import timezone

BATCH = 100
DEFERRED = 4  # django-mailer's PRIORITY_DEFERRED: held until retry_deferred


def _batches(queryset):
    last = 0
    while True:
        rows = list(queryset.filter(pk__gt=last).order_by("pk")[:BATCH])
        if not rows:
            return
        yield rows
        last = rows[-1].pk


def convert_messages(apps, schema_editor):
    from mailer.message import pickles as legacy  # django-mailer's pickle reader, moved there

    Message = apps.get_model("mailer", "Message")
    db = schema_editor.connection.alias
    now = timezone.now()
    # Rows from before 0008: "queued" by the column's default, and no due time yet.
    pending = Message.objects.using(db).filter(due_at__isnull=True, status="queued")
    for rows in _batches(pending.only("pk", "message_data", "priority", "when_added")):
        with transaction.atomic(using=db):
            for row in rows:
                changes = {"due_at": row.when_added}
                if row.priority == DEFERRED:  # now a state, due at once (what retry_deferred did)
                    changes = {"status": "deferred", "priority": 2, "due_at": now}
                if legacy.is_legacy(row.message_data):
                    try:
                        changes["message_data"] = legacy.convert(row.message_data)
                    except ValueError as error:  # kept and visible, never sent or executed
                        changes.update(
                            status="failed",
                            due_at=None,
                            last_reply=f"django-mailer data could not be converted: {error}",
                        )
                Message.objects.using(db).filter(pk=row.pk).update(**changes)


def convert_logs(apps, schema_editor):
    from mailer.message import pickles as legacy  # django-mailer's pickle reader, moved there

    MessageLog = apps.get_model("mailer", "MessageLog")
    db = schema_editor.connection.alias
    logged = (
        MessageLog.objects.using(db).exclude(message_data__isnull=True).exclude(message_data="")
    )
    for rows in _batches(logged.only("pk", "message_data")):
        with transaction.atomic(using=db):
            for row in rows:
                if not legacy.is_legacy(row.message_data):
                    continue
                try:
                    # The message as it was logged: no Message-ID is made up for it.
                    data = legacy.convert(row.message_data, assign_message_id=False)
                except ValueError:
                    continue  # unreadable: the row keeps django-mailer's data, never executed
                MessageLog.objects.using(db).filter(pk=row.pk).update(message_data=data)


class Migration(migrations.Migration):
    atomic = False  # each batch commits on its own: a big queue does not hold one long lock

    dependencies = [("mailer", "0008_queue_schema")]

    operations = [
        migrations.RunPython(convert_messages, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(convert_logs, migrations.RunPython.noop, elidable=True),
    ]
