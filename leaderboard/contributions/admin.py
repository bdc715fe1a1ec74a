"""Admin for contributions: proposals and revisions are read here; reviews go through the queue's form
(services.review), so that every decision leaves its revision."""
from django.contrib import admin

from .models import Proposal, Revision


class RevisionInline(admin.TabularInline):
    model = Revision
    fields = ["created_at", "action", "author_name", "reason", "changes", "result"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Proposal)
class ProposalAdmin(admin.ModelAdmin):
    list_display = ["pk", "dataset", "method_name", "score", "kind", "status", "contributor", "created_at"]
    list_filter = ["status", "kind", "paper_protocol", "dataset"]
    search_fields = ["method_name", "doi", "arxiv_id", "bibtex_key", "paper_title", "contributor__username"]
    readonly_fields = ["contributor", "status", "reviewed_by", "reviewed_at", "review_reason", "result", "reference",
                       "batch", "batch_row"]
    inlines = [RevisionInline]

    def has_change_permission(self, request, obj=None):
        """An accepted or rejected proposal is history: shown, never changed (nor deleted) here."""
        if obj is not None and obj.status in (Proposal.Status.ACCEPTED, Proposal.Status.REJECTED):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status in (Proposal.Status.ACCEPTED, Proposal.Status.REJECTED):
            return False
        return super().has_delete_permission(request, obj)


@admin.register(Revision)
class RevisionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "action", "author_name", "result", "proposal", "reason"]
    list_filter = ["action"]
    search_fields = ["reason", "author_name"]
    readonly_fields = ["result", "proposal", "action", "author", "author_name", "reason", "changes", "created_at"]
