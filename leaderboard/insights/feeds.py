"""The Atom feed of published leaderboard versions: one entry per version, newest first."""
from django.contrib.syndication.views import Feed
from django.urls import reverse_lazy
from django.utils.feedgenerator import Atom1Feed

from . import selectors


class VersionsFeed(Feed):
    """Follow the boards without visiting them: a version is published once and never changes, so each is
    one entry for good, dated when it was frozen."""

    feed_type = Atom1Feed
    title = "Shelfmark: published leaderboard versions"
    subtitle = "Every frozen version of a Shelfmark board, with its permalink, citation and content hash."
    link = reverse_lazy("home")
    feed_url = reverse_lazy("versions-feed")
    author_name = "Shelfmark"

    def items(self):
        return selectors.published_versions()

    def item_title(self, version):
        return f"{version.dataset.name}: version {version.number}"

    def item_description(self, version):
        note = f"{version.note}. " if version.note else ""
        return (f"{note}{version.dataset.task_family.name}; frozen {version.published_at:%Y-%m-%d %H:%M} UTC; "
                f"content SHA-256 {version.content_hash or 'not recorded'}.")

    def item_link(self, version):
        return version.get_absolute_url()

    def item_guid(self, version):
        """The entry's id: its permalink under SHELFMARK_SITE_URL, the same whatever host the feed was read from."""
        return selectors.version_url(version)

    item_guid_is_permalink = True

    def item_pubdate(self, version):
        return version.published_at

    def item_updateddate(self, version):
        return version.published_at

    def item_categories(self, version):
        return [version.dataset.task_family.name]
