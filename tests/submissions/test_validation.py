"""Uploads are checked before anything is stored or queued; each refusal says why, nothing is kept."""
import pickle

import numpy as np
import pytest
import torch
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from submission_helpers import CreatesAFile

from leaderboard.submissions.services import SubmissionRequest, submission_create
from leaderboard.submissions.validation import SubmissionRefused


@pytest.fixture
def owner(make_user):
    return make_user("ada")


@pytest.fixture
def client_as_owner(client, owner):
    client.force_login(owner)
    return client


def post_submission(client, upload_name, content, **fields):
    data = {"model_name": "My net", "source": "weights", "architecture": "resnet18", "benchmarks": ["digits"],
            "kind": "off_the_shelf", **fields}
    data["upload"] = SimpleUploadedFile(upload_name, content)
    return client.post(reverse("submission-new"), data)


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(client_as_owner, digits, tmp_path,
                                                               assert_nothing_stored):
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": CreatesAFile(marker)}, weights)

    response = post_submission(client_as_owner, "evil.pt", weights.read_bytes())

    assert response.status_code == 400
    assert "could run code" in response.content.decode()
    assert not marker.exists()
    assert_nothing_stored()


def test_a_plain_pickle_is_refused_by_its_magic_bytes(client_as_owner, digits, tmp_path, assert_nothing_stored):
    marker = tmp_path / "pwned"
    response = post_submission(client_as_owner, "weights.pkl", pickle.dumps(CreatesAFile(marker)))

    assert response.status_code == 400
    assert "Plain pickle files are not accepted" in response.content.decode()
    assert not marker.exists()
    assert_nothing_stored()


def test_weights_that_do_not_fit_the_architecture_are_refused_with_the_names(client_as_owner, digits, tmp_path,
                                                                              assert_nothing_stored):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    state = resnet18(weights=None).state_dict()
    state["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    del state["layer1.0.bn1.running_mean"]
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)

    response = post_submission(client_as_owner, "bad.safetensors", path.read_bytes())

    text = response.content.decode()
    assert response.status_code == 400
    assert "don&#x27;t fit resnet18" in text
    assert "layer1.0.bn1.running_mean" in text and "conv1.weight" in text
    assert_nothing_stored()


def test_weights_that_fit_are_stored_and_one_job_is_queued(owner, digits, tmp_path, session_media):
    from torchvision.models import resnet18

    path = tmp_path / "good.pt"
    torch.save(resnet18(weights=None).state_dict(), path)

    submission = submission_create(SubmissionRequest(
        owner=owner, model_name="ResNet-18 (mine)", source="weights", architecture="resnet18",
        benchmarks=["digits"], upload=path, keep_upload=True,
    ))

    assert submission.upload_format == "torch_zip"
    assert (session_media / submission.upload).is_file()
    assert path.is_file(), "a command-line file is copied, not moved"
    job = submission.jobs.get()
    assert (job.benchmark, job.status, job.queue) == ("digits", "queued", "cpu")
    assert job.sent_at is None  # sent on commit only


def test_an_oversized_upload_is_stopped_with_the_limit_in_the_message(client_as_owner, digits, settings,
                                                                      assert_nothing_stored):
    settings.SHELFMARK_MAX_UPLOAD_BYTES = 50_000
    response = post_submission(client_as_owner, "big.safetensors", b"\0" * 200_000)

    assert response.status_code == 400
    assert "larger than the upload limit of 48.8" in response.content.decode()
    assert_nothing_stored()


def test_an_unknown_format_is_refused(client_as_owner, digits, assert_nothing_stored):
    response = post_submission(client_as_owner, "model.bin", b"GIF89a not weights at all")

    assert response.status_code == 400
    assert "Unrecognised file format" in response.content.decode()
    assert_nothing_stored()


def _digits_features(tmp_path, *, drop=0, nan=False):
    from workers.benchmarks import load_digits_benchmark

    data = load_digits_benchmark()
    ids = [r.id for split in data.splits.values() for r in split]
    vectors = {image_id: np.ones(8, dtype=np.float32) for image_id in ids[drop:]}
    if nan:
        vectors[ids[-1]][3] = np.nan
    path = tmp_path / "features.npz"
    np.savez(path, **vectors)
    return path


def test_features_with_the_wrong_count_are_refused(client_as_owner, digits, tmp_path, assert_nothing_stored):
    path = _digits_features(tmp_path, drop=3)
    response = post_submission(client_as_owner, "features.npz", path.read_bytes(), source="features")

    assert response.status_code == 400
    assert "1794 vectors for its 1797 images (3 image ids missing" in response.content.decode()
    assert_nothing_stored()


def test_features_with_nan_are_refused(client_as_owner, digits, tmp_path, assert_nothing_stored):
    path = _digits_features(tmp_path, nan=True)
    response = post_submission(client_as_owner, "features.npz", path.read_bytes(), source="features")

    assert response.status_code == 400
    assert "contains NaN or infinite values" in response.content.decode()
    assert_nothing_stored()


def test_valid_features_are_accepted(owner, digits, tmp_path):
    path = _digits_features(tmp_path)
    submission = submission_create(SubmissionRequest(owner=owner, model_name="My features", source="features",
                                                     benchmarks=["digits"], upload=path, keep_upload=True))
    assert submission.upload_format == "npz"


def test_an_onnx_graph_is_checked(owner, digits, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["features"])], "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 3, 1, 1])],
    )
    good = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), good)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(good.read_bytes()[:40])

    request = {"owner": owner, "model_name": "Tiny ONNX", "source": "onnx", "benchmarks": ["digits"],
               "keep_upload": True}
    assert submission_create(SubmissionRequest(upload=good, **request)).upload_format == "onnx"
    with pytest.raises(SubmissionRefused, match="ONNX"):
        submission_create(SubmissionRequest(upload=broken, **request))


def test_a_benchmark_without_data_here_is_refused(owner, digits):
    with pytest.raises(SubmissionRefused, match="not available on this installation"):
        submission_create(SubmissionRequest(owner=owner, model_name="x", source="builtin",
                                            architecture="efficientnet_lite0", benchmarks=["voc2007"]))
