import uuid

from django.db import migrations

DEFAULT_ORG_ID = uuid.UUID("00000000-0000-0000-0000-000000000000")


def create_default_org(apps, schema_editor):
    Organization = apps.get_model("flightctl", "Organization")
    Organization.objects.get_or_create(id=DEFAULT_ORG_ID, defaults={"display_name": "Default"})


class Migration(migrations.Migration):
    dependencies = [("flightctl", "0001_initial")]
    operations = [migrations.RunPython(create_default_org, migrations.RunPython.noop)]
