"""Versioned leaderboards: the list of versions, immutable permalinks, diffs, and publishing."""
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from leaderboard.pagecache import frozen_page, frozen_response

from . import selectors
from .services import publish_version


def leaderboard_versions(request, slug: str):
    dataset = selectors.dataset_or_404(slug)
    return render(request, "boards/versions.html", {"dataset": dataset, "versions": selectors.versions_of(dataset)})


def leaderboard_version(request, slug: str, number: int):
    """A frozen version: same bytes for everybody forever (rendered once, then served as stored, see
    leaderboard/pagecache.py), cached by browsers with its content hash as ETag."""
    return frozen_response(request, frozen_page(slug, number, lambda: _render_version(request, slug, number)))


def _render_version(request, slug: str, number: int) -> tuple[bytes, str]:
    version = selectors.version_or_404(selectors.dataset_or_404(slug), number)
    # Rendered as for an anonymous visitor (no user name, no CSRF token, no flash messages):
    # a public, immutable page must not carry anything personal.
    content = render_to_string("boards/version.html", {
        "dataset": version.dataset, "version": version, "entries": selectors.version_entries(version),
        "user": AnonymousUser(), "messages": [], "perms": None,
    }, request).encode()
    return content, f'"{version.content_hash}"'


def leaderboard_diff(request, slug: str):
    dataset = selectors.dataset_or_404(slug)
    try:
        a, b = int(request.GET.get("a", "")), int(request.GET.get("b", ""))
    except ValueError:
        return HttpResponseBadRequest("Give two version numbers: ?a=0&b=1")
    diff = selectors.version_diff(selectors.version_or_404(dataset, a), selectors.version_or_404(dataset, b))
    return render(request, "boards/diff.html", {"dataset": dataset, "diff": diff})


@require_POST
@staff_member_required
def leaderboard_publish(request, slug: str):
    dataset = selectors.dataset_or_404(slug)
    version = publish_version(dataset, user=request.user, note=request.POST.get("note", "")[:2000])
    messages.success(request, f"Published version {version.number} of {dataset.name}.")
    return redirect(version)
