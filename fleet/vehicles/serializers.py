from rest_framework import serializers

from fleet.vehicles.models import Equipment


class EquipmentSerializer(serializers.ModelSerializer):
    site_slug = serializers.SlugRelatedField(source="site", slug_field="slug", read_only=True)

    class Meta:
        model = Equipment
        fields = [
            "id",
            "site",
            "site_slug",
            "kind",
            "name",
            "manufacturer",
            "model",
            "payload_capacity_t",
            "autonomous",
            "status",
            "created_at",
        ]
