from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0004_connectivity_index'),
    ]

    operations = [
        migrations.AddField(
            model_name='device',
            name='owner_pending',
            field=models.BooleanField(default=False),
        ),
        migrations.AddIndex(
            model_name='device',
            index=models.Index(condition=models.Q(('owner_pending', True)),
                               fields=['org_id', 'id'], name='device_owner_pending'),
        ),
    ]
