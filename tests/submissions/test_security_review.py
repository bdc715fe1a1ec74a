"""Attacks on the submission path: hostile files, other users' submissions, forged POSTs, markup in names.

Each test is one attack from the security review; those marked "was:" failed before the fix beside them.
"""
import io
import secrets
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from submission_helpers import CreatesAFile

from leaderboard.registry.models import Method, Result
from leaderboard.submissions import validation
from leaderboard.submissions.models import EvaluationJob, Submission
from leaderboard.submissions.services import SubmissionRequest, submission_create
from leaderboard.submissions.uploads import SizeLimitedUploadHandler
from leaderboard.submissions.validation import SubmissionRefused, check_features, check_onnx


@pytest.fixture
def ada(make_user):
    return make_user("ada")


def features_post(client, content: bytes, name="features.npz", **extra):
    data = {"model_name": "My features", "source": "features", "benchmarks": ["digits"], "kind": "off_the_shelf",
            "upload": SimpleUploadedFile(name, content), **extra}
    return client.post(reverse("submission-new"), data)


def digits_features(path, dim=8):
    from workers.benchmarks import load_digits_benchmark

    data = load_digits_benchmark()
    np.savez(path, **{r.id: np.ones(dim, dtype=np.float32) for split in data.splits.values() for r in split})
    return path


def npy_header(shape, dtype="<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# -- hostile .npz files ---------------------------------------------------------------------------

def test_an_npz_with_an_object_array_is_refused_without_unpickling(client, ada, digits, tmp_path,
                                                                   assert_nothing_stored):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    np.savez(path, payload=np.array([CreatesAFile(marker)], dtype=object))
    client.force_login(ada)

    response = features_post(client, path.read_bytes())

    assert response.status_code == 400
    assert "holds Python objects" in response.content.decode()
    assert not marker.exists()
    assert_nothing_stored()


def test_an_npz_declaring_an_absurd_array_is_refused_before_allocating(digits, tmp_path):
    # was: MemoryError ("Unable to allocate 7.11 PiB"), a 500 from the form
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.npy", npy_header((10**15,)) + b"\0" * 64)

    with pytest.raises(SubmissionRefused, match="declares 8000000000000000 bytes but holds only"):
        check_features(path, "digits")


def test_an_npz_bomb_is_refused_from_its_headers(digits, tmp_path, monkeypatch):
    # was: a deflated 1 MB upload of zeros made the web process allocate and fill 1 GB
    monkeypatch.setattr(validation, "MAX_FEATURE_DIM", 64)   # budget for digits: ~5.5 MB instead of ~475 MB
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.npy", npy_header((2**21,)) + b"\0" * 2**24)   # 16 MiB of zeros
    assert bomb.stat().st_size < 100_000

    read = []
    monkeypatch.setattr(np, "load", lambda *a, **k: read.append(a) or pytest.fail("np.load ran"))
    with pytest.raises(SubmissionRefused, match="16 MiB uncompressed, more than 1797 images of at most 64 values"):
        check_features(bomb, "digits")


def test_the_size_bound_accepts_real_features_at_the_dimension_limit(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(validation, "MAX_FEATURE_DIM", 64)
    assert check_features(digits_features(tmp_path / "ok.npz", dim=64), "digits") == "npz"
    with pytest.raises(SubmissionRefused, match="uncompressed"):
        check_features(digits_features(tmp_path / "wide.npz", dim=1200), "digits")


# -- ONNX -----------------------------------------------------------------------------------------

def _onnx_with_external_tensor(path, location: str):
    from onnx import TensorProto, helper

    leak = TensorProto(name="leak", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = leak.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=1),
         helper.make_node("Reshape", ["m", "shape"], ["m2"]),
         helper.make_node("Add", ["m2", "leak"], ["features"])], "leak",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 4])],
        initializer=[leak, helper.make_tensor("shape", TensorProto.INT64, [2], [1, 1])],
    )
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


def test_an_onnx_model_reading_an_external_file_is_refused(tmp_path, monkeypatch):
    # was: accepted whenever the named file existed in the web server's working directory, and then
    # onnxruntime on the worker reads that name from the folder of the stored upload
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(b"TOPSECRET".ljust(16, b"\0"))
    model = _onnx_with_external_tensor(tmp_path / "leak.onnx", "secret.bin")

    with pytest.raises(SubmissionRefused, match="keeps tensor 'leak' in an external file"):
        check_onnx(model)
    for location in ("../secret.bin", "/etc/passwd"):
        with pytest.raises(SubmissionRefused):
            check_onnx(_onnx_with_external_tensor(tmp_path / "escape.onnx", location))


def test_a_malformed_or_truncated_onnx_file_is_refused(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x07" + secrets.token_bytes(4000))
    with pytest.raises(SubmissionRefused, match="ONNX"):
        check_onnx(path)


# -- the upload itself ----------------------------------------------------------------------------

def test_the_upload_limit_counts_every_file_of_the_request(client, ada, digits, settings, assert_nothing_stored):
    # was: the count restarted for each file, so 100 files just under the limit each were written to disk
    settings.SHELFMARK_MAX_UPLOAD_BYTES = 50_000
    client.force_login(ada)
    response = client.post(reverse("submission-new"), {
        "model_name": "x", "source": "features", "benchmarks": ["digits"], "kind": "off_the_shelf",
        "extra": SimpleUploadedFile("a.bin", b"\1" * 30_000),
        "upload": SimpleUploadedFile("b.npz", b"\1" * 30_000),
    })
    assert response.status_code == 400
    assert "larger than the upload limit of 48.8" in response.content.decode()
    assert_nothing_stored()


def test_an_anonymous_upload_is_redirected_before_its_body_is_read(digits, monkeypatch):
    # was: the CSRF check read request.POST first, so anonymous uploads were streamed to disk
    chunks = []
    original = SizeLimitedUploadHandler.receive_data_chunk
    monkeypatch.setattr(SizeLimitedUploadHandler, "receive_data_chunk",
                        lambda self, data, start: chunks.append(len(data)) or original(self, data, start))
    client = Client(enforce_csrf_checks=True)
    token = secrets.token_hex(16)
    client.cookies["csrftoken"] = token
    response = features_post(client, b"\0" * 100_000, csrfmiddlewaretoken=token)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert chunks == []


def test_the_uploaded_file_name_never_reaches_the_disk_or_the_page(client, ada, digits, tmp_path, session_media):
    client.force_login(ada)
    content = digits_features(tmp_path / "f.npz").read_bytes()
    response = features_post(client, content, name="../../<img src=x onerror=alert(1)>.npz",
                             model_name="<script>alert(1)</script>")

    assert response.status_code == 302
    submission = Submission.objects.get()
    assert submission.upload == f"submissions/{submission.pk}/upload.npz"
    assert (session_media / submission.upload).read_bytes() == content
    for url in (submission.get_absolute_url(), reverse("submission-list")):
        page = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "onerror" not in page


def test_a_method_name_with_markup_is_escaped_on_the_public_board(client, digits):
    method = Method.objects.create(name='</script><script>alert("x")</script>')
    Result.objects.create(dataset=digits, method=method, score=95.0, metric=digits.metric,
                          kind=Result.Kind.OFF_THE_SHELF, origin=Result.Origin.EVALUATED, is_public=True)

    page = client.get(digits.get_absolute_url()).content.decode()

    assert '<script>alert("x")' not in page
    assert "\\u003C/script\\u003E\\u003Cscript\\u003Ealert" in page   # json_script escapes < and >


# -- other users, forged POSTs --------------------------------------------------------------------

@pytest.fixture
def finished_private_job(ada, digits, tmp_path):
    """A done job of Ada's private submission, with the artifacts a bundle is made from."""
    submission = submission_create(SubmissionRequest(owner=ada, model_name="Secret net", source="builtin",
                                                     architecture="efficientnet_lite0", benchmarks=["digits"]))
    job = submission.jobs.get()
    features = tmp_path / "features.npz"
    np.savez(features, train_ids=np.array(["a"]), test_ids=np.array(["b"]), train=np.ones((1, 2)))
    job.result = Result.objects.create(dataset=digits, method=Method.objects.create(name="Secret net"), score=91.0,
                                       metric=digits.metric, origin=Result.Origin.EVALUATED, is_public=False,
                                       owner=ada, provenance={"submission": submission.pk})
    job.status = EvaluationJob.Status.DONE
    job.evaluation = {"artifacts": {"features.npz": str(features)}, "protocol": {}, "score": 0.91,
                      "metric": "mean_class_accuracy"}
    job.save()
    return job


def test_another_user_cannot_reach_a_private_submission(client, make_user, finished_private_job):
    job, submission = finished_private_job, finished_private_job.submission
    queued = EvaluationJob.objects.create(submission=submission, benchmark="other", dataset=job.dataset)
    urls = {
        "status": reverse("submission-status", args=[submission.pk]),
        "bundle": reverse("job-bundle", args=[job.pk]),
    }
    client.force_login(make_user("eve"))
    assert client.get(urls["status"]).status_code == 404
    assert client.get(urls["bundle"]).status_code == 404
    assert client.post(reverse("job-cancel", args=[queued.pk])).status_code == 404
    assert client.post(reverse("submission-make-public", args=[submission.pk])).status_code == 404
    client.logout()
    assert client.get(urls["bundle"]).status_code == 404
    assert client.get(urls["status"]).status_code == 404

    client.force_login(submission.owner)   # the same requests work for the owner
    response = client.get(urls["bundle"])
    assert response.status_code == 200
    assert "features.npz" in zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    queued.refresh_from_db()
    assert queued.status == EvaluationJob.Status.QUEUED
    submission.refresh_from_db()
    assert not submission.is_public


def test_on_a_public_submission_others_can_read_but_not_cancel(client, make_user, finished_private_job):
    submission = finished_private_job.submission
    submission.is_public = True
    submission.save()
    queued = EvaluationJob.objects.create(submission=submission, benchmark="other",
                                          dataset=finished_private_job.dataset,
                                          error_details="Traceback: /srv/secret/path")
    client.force_login(make_user("eve"))

    status = client.get(reverse("submission-status", args=[submission.pk])).json()
    assert client.post(reverse("job-cancel", args=[queued.pk])).status_code == 403
    queued.refresh_from_db()
    assert queued.status == EvaluationJob.Status.QUEUED
    assert all("error_details" not in job and not job["cancellable"] for job in status["jobs"])
    assert "/srv/secret/path" not in client.get(submission.get_absolute_url()).content.decode()


def test_state_changing_posts_need_the_csrf_token(make_user, finished_private_job):
    submission = finished_private_job.submission
    queued = EvaluationJob.objects.create(submission=submission, benchmark="other",
                                          dataset=finished_private_job.dataset)
    client = Client(enforce_csrf_checks=True)
    client.force_login(submission.owner)
    assert client.post(reverse("submission-make-public", args=[submission.pk])).status_code == 403
    assert client.post(reverse("job-cancel", args=[queued.pk])).status_code == 403
    client.force_login(make_user("boss", staff=True))
    versions = submission.jobs.first().dataset.versions.count()
    assert client.post("/leaderboards/digits/publish/").status_code == 403

    submission.refresh_from_db()
    queued.refresh_from_db()
    assert not submission.is_public
    assert queued.status == EvaluationJob.Status.QUEUED
    assert submission.jobs.first().dataset.versions.count() == versions
