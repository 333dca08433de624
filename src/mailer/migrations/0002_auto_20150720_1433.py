# Installations from before Django 1.7 may have a 75-character address column.
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("mailer", "0001_initial")]

    operations = [
        migrations.AlterField(
            model_name="dontsendentry",
            name="to_address",
            field=models.EmailField(max_length=254),
        ),
    ]
