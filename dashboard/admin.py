from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from .models import Deletion, GCRun, Rollback

# Django's admin under registryui's name; templates/admin/base_site.html links back to the dashboard.
admin.site.site_header = "registryui administration"
admin.site.site_title = "registryui admin"
admin.site.index_title = "Users, roles (groups) and audit records"
# Its own "View site" link gives way to the template's "Back to the dashboard".
admin.site.site_url = None


class AuditAdmin(admin.ModelAdmin):
    """Audit records are read-only: a record that can be edited or deleted proves nothing."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Deletion)
class DeletionAdmin(AuditAdmin):
    """Every delete the dashboard made."""

    list_display = ["created_at", "username", "action", "repository", "tag_list", "short_digest", "restored_at"]
    list_filter = ["action", "repository"]
    search_fields = ["repository", "digest", "username", "tags"]
    readonly_fields = [f.name for f in Deletion._meta.fields]
    exclude = ["manifest"]

    @admin.display(description="tags")
    def tag_list(self, obj: Deletion) -> str:
        return ", ".join(obj.tags)

    @admin.display(description="digest")
    def short_digest(self, obj: Deletion) -> str:
        return obj.digest[:19]


@admin.register(GCRun)
class GCRunAdmin(AuditAdmin):
    """The audit of garbage collections, read-only: who ran what, what it deleted, its output."""

    list_display = ["created_at", "username", "kind", "delete_untagged", "state", "eligible_blobs", "deleted_blobs",
                    "bytes_freed", "exit_code"]
    list_filter = ["state", "dry_run", "delete_untagged"]
    search_fields = ["username", "output", "error"]
    readonly_fields = [f.name for f in GCRun._meta.fields]

    @admin.display(description="kind")
    def kind(self, obj: GCRun) -> str:
        return "preview" if obj.dry_run else "run"


@admin.register(Rollback)
class RollbackAdmin(AuditAdmin):
    """Every roll back of a tag: who re-pointed which tag, from which digest to which."""

    list_display = ["created_at", "username", "repository", "tag", "short_from", "short_to"]
    list_filter = ["repository"]
    search_fields = ["repository", "tag", "username", "from_digest", "to_digest"]
    readonly_fields = [f.name for f in Rollback._meta.fields]

    @admin.display(description="from")
    def short_from(self, obj: Rollback) -> str:
        return obj.from_digest[:19] or "(no tag)"

    @admin.display(description="to")
    def short_to(self, obj: Rollback) -> str:
        return obj.to_digest[:19]
