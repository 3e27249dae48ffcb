from django.contrib import admin

from .models import Deletion


@admin.register(Deletion)
class DeletionAdmin(admin.ModelAdmin):
    """The audit log, read-only: a record that can be edited proves nothing."""

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

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False
