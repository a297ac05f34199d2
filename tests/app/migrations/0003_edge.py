from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("app", "0002_event")]

    operations = [
        migrations.CreateModel(
            name="Edge",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("label", models.CharField(max_length=10)),
                ("text", models.TextField(default="")),
                ("number", models.IntegerField(default=0)),
                ("big", models.BigIntegerField(default=0)),
                ("when", models.DateTimeField(null=True)),
                ("data", models.JSONField(null=True)),
            ],
            options={"ordering": ["id"]},
        ),
    ]
