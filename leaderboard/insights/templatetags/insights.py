"""Template tags that let other apps' pages show the insights with one include each (the dataset page, a
submission's page, a version's permalink), reading through insights.selectors."""
from django import template

from .. import selectors

register = template.Library()


@register.simple_tag
def dataset_insights(dataset, protocol=None):
    """`{% dataset_insights dataset protocol as insights %}`: pairs, since 2014 and the chart's data of a board
    (of the protocol the page filters by, if any)."""
    return selectors.dataset_insights(dataset, protocol or None)


@register.simple_tag
def submission_measurements(submission, user):
    """The submission's measurements `user` may put beside a paper's number (none for anybody else)."""
    return selectors.submission_measurements(submission, user)


@register.simple_tag
def version_citation(version):
    return {"key": selectors.citation_key(version), "bibtex": selectors.version_bibtex(version),
            "url": selectors.version_url(version)}


@register.filter
def signed(value, digits=1):
    """A gain as "+5.2" (or "−0.3"); "—" for none."""
    if value is None:
        return "—"
    return f"{float(value):+.{int(digits)}f}".replace("-", "−")
