"""Who may do what: viewers browse, maintainers delete and restore, admins do everything."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.http import HttpResponseClientRedirect

from . import conf
from .web import render_page

BROWSE = "dashboard.browse_registry"
DELETE = "dashboard.delete_from_registry"
ROLES = {"viewer": ["browse_registry"], "maintainer": ["browse_registry", "delete_from_registry"]}

#: Who did something: a signed-in user, or anonymous (and None from the shell).
User = AbstractBaseUser | AnonymousUser

LOGIN_ATTEMPTS = 5
LOGIN_WINDOW = 15 * 60


def can_browse(request: HttpRequest) -> bool:
    user = request.user
    if user.is_authenticated:
        return user.has_perm(BROWSE) or user.has_perm(DELETE)
    return conf.get().anonymous_read


def can_delete(request: HttpRequest) -> bool:
    return request.user.is_authenticated and request.user.has_perm(DELETE)


def require_delete(request: HttpRequest) -> None:
    """Maintainer pages: deleting, restoring, garbage collection."""
    if not can_delete(request):
        raise PermissionDenied("Only maintainers may delete or restore.")


class AccessMiddleware:
    """Nothing is open by default: every view needs a signed-in user with a role, except views
    marked with Django's @login_not_required; anonymous read-only browsing is opt-in."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func: Callable, args: tuple, kwargs: dict) -> HttpResponse | None:
        if not getattr(view_func, "login_required", True) or request.path.startswith("/admin/"):
            return None
        anonymous = not request.user.is_authenticated
        if anonymous and not (conf.get().anonymous_read and request.method in ("GET", "HEAD")):
            login = f"{reverse('login')}?next={request.get_full_path()}"
            return HttpResponseClientRedirect(login) if getattr(request, "htmx", False) else redirect(login)
        if not can_browse(request):
            return _refusal(
                request,
                "No access yet",
                f"You are signed in as “{request.user.get_username()}”, but your account has no role.",
                "viewer or maintainer",
            )
        return None


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler403: a refusal in the dashboard's layout that says which role the page needs, who
    can grant it, and the way back. Every PermissionDenied the pages raise guards a maintainer's
    action (require_delete, roll back, sync), the one role above viewer."""
    explanation = str(exception or "") or "You may not do this."
    # The admin's refusals (audit records cannot be added, say) are not about a role.
    if request.path.startswith("/admin/") or (request.user.is_authenticated and can_delete(request)):
        return _refusal(request, "Not allowed", explanation, "")
    return _refusal(request, "For maintainers only", explanation, "maintainer")


def _refusal(request: HttpRequest, title: str, explanation: str, role: str) -> HttpResponse:
    context = {"title": title, "error": explanation, "role": role, "back": _way_back(request)}
    if not request.user.is_authenticated:
        context["sign_in"] = f"{reverse('login')}?next={quote(request.get_full_path(), safe='/')}"
    return render_page(request, "403.html", "message", context, status=403)


def _way_back(request: HttpRequest) -> str:
    """The page the user came from (htmx: the page they are on), when it is on this site and not
    the refused page itself; "" otherwise (the page then offers the catalog)."""
    came_from = (request.htmx.current_url if getattr(request, "htmx", None) else "") or request.headers.get(
        "Referer", ""
    )
    if not came_from or not url_has_allowed_host_and_scheme(
        came_from, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return ""
    if urlsplit(came_from).path == request.path:
        return ""
    return came_from


def client_address(request: HttpRequest) -> str:
    """The visitor's address. Behind the proxy (REGISTRYUI_BEHIND_PROXY) REMOTE_ADDR is the proxy's
    for everyone: take the last X-Forwarded-For entry, the one our proxy appended (earlier
    entries come from the client and can be forged)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if getattr(settings, "BEHIND_PROXY", False) and forwarded.strip():
        return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def _throttle_key(request: HttpRequest, username: str) -> str:
    return f"rui:login:{client_address(request)}:{username.lower()[:150]}"


class ThrottledAuthenticationForm(AuthenticationForm):
    """Five wrong passwords for a user from an address lock that pair out for 15 minutes."""

    def clean(self) -> dict:
        username = self.data.get("username", "")
        key = _throttle_key(self.request, username)
        if cache.get(key, 0) >= LOGIN_ATTEMPTS:
            raise ValidationError("Too many failed sign-ins. Wait 15 minutes and try again.", code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError:
            try:
                cache.incr(key)
            except ValueError:
                cache.set(key, 1, LOGIN_WINDOW)
            raise
        cache.delete(key)
        return cleaned


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True


def ensure_roles(**kwargs: object) -> None:
    """The viewer and maintainer groups with their permissions (after every migrate)."""
    from django.contrib.auth.models import Group, Permission

    for group_name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        perms = Permission.objects.filter(content_type__app_label="dashboard", codename__in=codenames)
        group.permissions.set(perms)
