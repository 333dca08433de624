# The tables as django-mailer first created them. Migrations 0001-0007 keep
# django-mailer's names and schema steps, so a database it migrated carries on
# with ours from 0008.
import django.utils.timezone
from django.db import migrations, models

PRIORITY_CHOICES = [("1", "high"), ("2", "medium"), ("3", "low"), ("4", "deferred")]
RESULT_CHOICES = [("1", "success"), ("2", "don't send"), ("3", "failure")]


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="DontSendEntry",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("to_address", models.EmailField(max_length=254)),
                ("when_added", models.DateTimeField()),
            ],
            options={
                "verbose_name": "don't send entry",
                "verbose_name_plural": "don't send entries",
            },
        ),
        migrations.CreateModel(
            name="Message",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("message_data", models.TextField()),
                ("when_added", models.DateTimeField(default=django.utils.timezone.now)),
                ("priority", models.CharField(choices=PRIORITY_CHOICES, default="2", max_length=1)),
            ],
            options={"verbose_name": "message", "verbose_name_plural": "messages"},
        ),
        migrations.CreateModel(
            name="MessageLog",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("message_data", models.TextField()),
                ("when_added", models.DateTimeField(db_index=True)),
                (
                    "priority",
                    models.CharField(choices=PRIORITY_CHOICES, db_index=True, max_length=1),
                ),
                ("when_attempted", models.DateTimeField(default=django.utils.timezone.now)),
                ("result", models.CharField(choices=RESULT_CHOICES, max_length=1)),
                ("log_message", models.TextField()),
            ],
            options={"verbose_name": "message log", "verbose_name_plural": "message logs"},
        ),
    ]
