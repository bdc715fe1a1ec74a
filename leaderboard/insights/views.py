"""Pages of the insights: a model across every benchmark, linking reported to measured, and a version's
citation. Each view checks access, calls one selector or service, and renders or redirects."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from leaderboard.boards.selectors import dataset_or_404, version_or_404
from leaderboard.pagecache import cache_for_visitors
from leaderboard.registry.models import Method, Result

from . import selectors, services
from .forms import ReproductionForm
from .models import Reproduction


@require_GET
@cache_for_visitors()
def model_detail(request, pk: int):
    try:
        page = selectors.model_page(pk)
    except Method.DoesNotExist:
        raise Http404("No public results for this model.") from None
    return render(request, "insights/model_detail.html", {"page": page, "method": page.method})


def _back(request):
    """Where a form sends its user back to: the page it came from when that is on this site, else home."""
    target = request.POST.get("next", "")[:500]
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return redirect(target)
    return redirect("home")


@require_POST
@login_required
def reproduction_create(request):
    """Put a paper's reported number beside a measurement (the form on a submission's page)."""
    form = ReproductionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a reported number to compare with (the form was incomplete).")
        return _back(request)
    measured = Result.objects.select_related("method").filter(pk=form.cleaned_data["measured"]).first()
    reported = Result.objects.select_related("method").filter(pk=form.cleaned_data["reported"]).first()
    if measured is None or reported is None:
        messages.error(request, "That number does not exist (any more).")
        return _back(request)
    try:
        pair = services.reproduction_link(request.user, reported=reported, measured=measured,
                                          note=form.cleaned_data["note"])
    except services.ReproductionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{pair.reported.method.name} ({pair.reported.score:g}) now stands beside "
                                  f"{pair.measured.method.name}: {pair.verdict}.")
    return _back(request)


@require_POST
@login_required
def reproduction_delete(request, pk: int):
    pair = get_object_or_404(Reproduction.objects.select_related("measured"), pk=pk)
    try:
        services.reproduction_unlink(request.user, pair)
    except services.ReproductionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "The link was removed.")
    return _back(request)


@require_GET
def version_cite_bib(request, slug: str, number: int):
    """The BibTeX entry of a published version; it never changes, so browsers may keep it."""
    version = version_or_404(dataset_or_404(slug), number)
    response = HttpResponse(selectors.version_bibtex(version), content_type="application/x-bibtex; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{selectors.citation_key(version)}.bib"'
    response["Cache-Control"] = "public, max-age=86400"
    return response
