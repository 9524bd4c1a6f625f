from django.db import migrations, models

# A view, not a table: the labels stay in Device.labels (one source of truth, GIN-indexed for
# selectors); the view only unnests them for GET /labels. The first column is the device id,
# which also serves as the unmanaged model's (non-unique) primary key: the model is only ever
# read through values() queries.
CREATE_VIEW = """
CREATE VIEW devices_devicelabel AS
SELECT d.id AS device_id, d.id AS id, d.org_id, d.name AS device_name,
       d.labels AS device_labels, l.key, l.value
FROM devices_device d CROSS JOIN LATERAL jsonb_each_text(d.labels) AS l(key, value)
"""


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0005_owner_pending'),
    ]

    operations = [
        migrations.RunSQL(CREATE_VIEW, "DROP VIEW devices_devicelabel"),
        migrations.CreateModel(
            name='DeviceLabel',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True,
                                           serialize=False, verbose_name='ID')),
                ('org_id', models.UUIDField()),
                ('device_name', models.CharField(max_length=253)),
                ('device_labels', models.JSONField()),
                ('key', models.TextField()),
                ('value', models.TextField()),
                ('device', models.ForeignKey(on_delete=models.deletion.DO_NOTHING,
                                             related_name='+', to='devices.device')),
            ],
            options={'db_table': 'devices_devicelabel', 'managed': False},
        ),
    ]
