"""Registry paths relative to the artifact store: every version still registered at an absolute
checkpoint directory is published into the store (``settings.ARTIFACT_ROOT``) and pointed at its
reference, ``checkpoints/<sha256>``. A version whose directory is gone (another checkout's,
say) cannot be published from here: it is left as it was and named in a warning; register its
checkpoint again from a host that has it, or run this from that host."""

import logging

from django.db import migrations, models

log = logging.getLogger(__name__)


def publish_local_versions(apps, schema_editor):
    from fleet.learning.services import publish_local_versions as publish

    published, missing = publish(apps.get_model("learning", "ModelVersion"))
    if published:
        log.info("published %d registered versions into the artifact store", published)
    if missing:
        log.warning(
            "not published (their checkpoint directories are not on this host): %s",
            ", ".join(missing),
        )


class Migration(migrations.Migration):
    dependencies = [("learning", "0005_shadow_predictions")]

    operations = [
        migrations.AlterField(
            model_name="modelversion",
            name="path",
            field=models.CharField(
                help_text=(
                    "The checkpoint in the artifact store, relative to its root: "
                    "checkpoints/<sha256>."
                ),
                max_length=500,
            ),
        ),
        # Backwards: the references stay valid (the store keeps the files), nothing to undo.
        migrations.RunPython(publish_local_versions, migrations.RunPython.noop),
    ]
