"""The staff group "moderators": its members review contributed results (superusers review too).
Staff add people to it in the admin (Authentication › Groups)."""
from django.db import migrations

MODERATORS = "moderators"


def create_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name=MODERATORS)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contributions", "0001_initial"),
    ]

    # Reversing keeps the group: people may have been put in it since.
    operations = [migrations.RunPython(create_group, migrations.RunPython.noop)]
