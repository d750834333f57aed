# Console tokens no longer hold the VNC address they were made with: the console proxy is told the
# instance's current address when it connects, so a token made before QEMU moved cannot lead to the old port.

from django.db import migrations


def delete_tokens(apps, schema_editor):
    # Going back, the address columns return without values to give them; tokens live minutes, so the
    # ones made meanwhile are dropped and their users simply ask for new ones.
    apps.get_model("portal", "ConsoleToken").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ("portal", "0007_host_credentials"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="consoletoken",
            name="host",
        ),
        migrations.RemoveField(
            model_name="consoletoken",
            name="port",
        ),
        # Listed last so that, reversed, it runs before the columns are added back.
        migrations.RunPython(migrations.RunPython.noop, delete_tokens),
    ]
