from django.contrib import admin

from .models import Reproduction


@admin.register(Reproduction)
class ReproductionAdmin(admin.ModelAdmin):
    """Seen and removed here; made from a submission's page only, where services.reproduction_link checks it."""

    list_display = ("pk", "reported", "measured", "verdict", "linked_by", "created_at")
    list_select_related = ("reported__dataset", "reported__method", "measured__dataset", "measured__method",
                           "linked_by")
    raw_id_fields = ("reported", "measured", "linked_by")
    search_fields = ("reported__method__name", "measured__method__name", "note")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
