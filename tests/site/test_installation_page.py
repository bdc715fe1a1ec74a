"""The installation page: what this installation runs, with its verified counts, and how to add the rest."""
from workers.benchmarks import BENCHMARKS
from workers.datasets import installed


def test_signed_in_users_see_the_benchmarks_and_how_to_add_the_others(client, make_user, settings, tmp_path):
    root = tmp_path / "flowers102"
    root.mkdir()
    installed.record_check(root, "flowers102", {"name": "flowers102", "images": 8189, "classes": 102})
    settings.SHELFMARK_DATA_ROOTS = f"flowers102={root}"
    client.force_login(make_user("lab-member"))

    page = client.get("/installation/").content.decode()

    assert "Oxford Flowers 102" in page and "8189" in page and "runs here" in page
    assert "python -m workers datasets fetch voc2007 /data/voc2007" in page   # no server path for a non-staff user
    assert str(root) not in page
    assert "SHELFMARK_DATA_ROOTS=flowers102=…,voc2007=/data/voc2007" in page
    assert "official host (vis.uky.edu/~stewe/ukbench/) is gone" in page
    assert '<a href="/installation/">Installation</a>' in page                 # the nav link, signed in


def test_staff_see_where_the_data_is(client, make_user, settings, tmp_path):
    root = tmp_path / "data" / "flowers102"
    root.mkdir(parents=True)
    settings.SHELFMARK_DATA_ROOTS = f"flowers102={root}"
    client.force_login(make_user("admin", staff=True))

    page = client.get("/installation/").content.decode()

    assert f"python -m workers datasets check flowers102 {root}" in page     # configured, never checked
    bundled = sum(1 for benchmark in BENCHMARKS.values() if not benchmark.needs_root)
    assert f"{bundled} of {len(BENCHMARKS)} benchmarks can be run here\n(1 more configured but not checked yet)" in page
    assert f"SHELFMARK_DATA_ROOTS=flowers102={root},voc2007={root.parent}/voc2007" in page


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    response = client.get("/installation/")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert 'href="/installation/"' not in client.get("/").content.decode()
