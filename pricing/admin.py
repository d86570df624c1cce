from django.contrib import admin

from .models import Unit


@admin.register(Unit)
class UnitAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "modality", "description"]
    list_filter = ["modality"]
    search_fields = ["code", "name"]
