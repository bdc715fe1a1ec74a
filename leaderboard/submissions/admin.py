"""Staff moderation: see every submission and job, make public or hide, cancel or re-run jobs."""
from django.contrib import admin, messages

from . import queue, services
from .models import EvaluationJob, Submission, Worker


class EvaluationJobInline(admin.TabularInline):
    model = EvaluationJob
    extra = 0
    fields = ("benchmark", "status", "queue", "stage", "done", "total", "attempts", "error", "result")
    readonly_fields = fields
    can_delete = False


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ("pk", "model_name", "owner", "source", "architecture", "is_public", "created_at")
    list_filter = ("is_public", "source")
    search_fields = ("model_name", "owner__username", "description")
    readonly_fields = ("upload", "upload_format", "upload_sha256", "method", "created_at")
    inlines = [EvaluationJobInline]
    actions = ["make_public", "hide"]

    @admin.action(description="Make public (with their results)")
    def make_public(self, request, queryset):
        for submission in queryset:
            services.submission_make_public(submission)

    @admin.action(description="Hide (private, results off the boards)")
    def hide(self, request, queryset):
        services.submissions_hide(queryset)


@admin.register(EvaluationJob)
class EvaluationJobAdmin(admin.ModelAdmin):
    list_display = ("pk", "submission", "benchmark", "status", "queue", "stage", "attempts", "sent_at", "finished_at")
    list_filter = ("status", "queue", "benchmark")
    readonly_fields = [f.name for f in EvaluationJob._meta.fields]
    actions = ["cancel", "resend", "rerun", "rerun_fresh"]

    @admin.action(description="Cancel")
    def cancel(self, request, queryset):
        for job in queryset:
            services.job_cancel(job)

    @admin.action(description="Send again to the broker (queued jobs only)")
    def resend(self, request, queryset):
        for job in queryset.filter(status=EvaluationJob.Status.QUEUED):
            queue.job_send(job.pk)

    @admin.action(description="Re-run (a new job; the earlier result stays in the history)")
    def rerun(self, request, queryset):
        self._rerun(request, queryset, fresh=False)

    @admin.action(description="Re-run, extracting the features again (not from the feature cache)")
    def rerun_fresh(self, request, queryset):
        self._rerun(request, queryset, fresh=True)

    def _rerun(self, request, queryset, *, fresh: bool):
        jobs = [services.job_rerun(job, by=request.user, fresh=fresh) for job in queryset]
        self.message_user(request, f"Queued {len(jobs)} re-run(s): jobs {', '.join(str(j.pk) for j in jobs)}.",
                          messages.SUCCESS)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("name", "queues", "hardware", "seen_at", "started_at")
    readonly_fields = [f.name for f in Worker._meta.fields]
