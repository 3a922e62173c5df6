from django.contrib import admin

from fleet.vehicles.models import Credential, Equipment

admin.site.register(Equipment)
admin.site.register(Credential)
