"""Uploads are checked by the engine before anything is stored or queued; each refusal says why in
Shelfmark's words, hostile files never run, and nothing is kept."""
import io
import pickle
import secrets
import zipfile

import numpy as np
import pytest
import torch
from submission_helpers import CreatesAFile, digits_features, features_post, post_submission

from leaderboard.submissions.models import Submission
from leaderboard.submissions.services import SubmissionRequest, submission_create
from leaderboard.submissions.validation import SubmissionRefused, check_upload
from workers import safeload


def npy_header(shape, dtype="<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# -- weights and ONNX graphs -----------------------------------------------------------------

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


def test_a_refused_pickle_tells_the_submitter_shelfmarks_advice_not_pytorchs(client_as_owner, digits, tmp_path,
                                                                            assert_nothing_stored):
    # was: "... Weights only load failed. This file can still be loaded, to do so you have two options, ..."
    weights = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": CreatesAFile(tmp_path / "pwned")}, weights)

    text = post_submission(client_as_owner, "evil.pt", weights.read_bytes()).content.decode()

    assert "torch.save(model.state_dict()) or safetensors" in text
    for advice in ("weights_only", "can still be loaded", "trust the source", "\x1b["):
        assert advice not in text
    assert_nothing_stored()


def test_the_form_shows_the_engines_own_refusal_without_rewording_it(client_as_owner, digits, tmp_path):
    # was: the web stripped a prefix the engine wrote ("... do not fit the architecture: ") to build its own
    from django.utils.html import escape
    from safetensors.torch import save_file

    from workers.contract import WeightsMismatch
    from workers.uploads import WEIGHTS, inspect_upload

    path = tmp_path / "headless.safetensors"
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(WeightsMismatch) as engine_says:
        inspect_upload(WEIGHTS, path, architecture="resnet18")

    response = post_submission(client_as_owner, "headless.safetensors", path.read_bytes())

    assert response.status_code == 400
    assert escape(str(engine_says.value)) in response.content.decode()


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


def test_an_unknown_format_is_refused(client_as_owner, digits, assert_nothing_stored):
    response = post_submission(client_as_owner, "model.bin", b"GIF89a not weights at all")

    assert response.status_code == 400
    assert "Unrecognised file format" in response.content.decode()
    assert_nothing_stored()


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
        check_upload(Submission.Source.ONNX, model)
    for location in ("../secret.bin", "/etc/passwd"):
        with pytest.raises(SubmissionRefused):
            check_upload(Submission.Source.ONNX, _onnx_with_external_tensor(tmp_path / "escape.onnx", location))


def test_a_malformed_or_truncated_onnx_file_is_refused(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x07" + secrets.token_bytes(4000))
    with pytest.raises(SubmissionRefused, match="ONNX"):
        check_upload(Submission.Source.ONNX, path)


# -- precomputed features ------------------------------------------------------------------------


def test_features_with_the_wrong_count_are_refused(client_as_owner, digits, tmp_path, assert_nothing_stored):
    path = digits_features(tmp_path / "features.npz", drop=3)
    response = post_submission(client_as_owner, "features.npz", path.read_bytes(), source="features")

    assert response.status_code == 400
    assert "1794 vectors for its 1797 images (3 image ids missing" in response.content.decode()
    assert_nothing_stored()


def test_features_with_nan_are_refused(client_as_owner, digits, tmp_path, assert_nothing_stored):
    path = digits_features(tmp_path / "features.npz", nan=True)
    response = post_submission(client_as_owner, "features.npz", path.read_bytes(), source="features")

    assert response.status_code == 400
    assert "contains NaN or infinite values" in response.content.decode()
    assert_nothing_stored()


def test_valid_features_are_accepted(owner, digits, tmp_path):
    path = digits_features(tmp_path / "features.npz")
    submission = submission_create(SubmissionRequest(owner=owner, model_name="My features", source="features",
                                                     benchmarks=["digits"], upload=path, keep_upload=True))
    assert submission.upload_format == "npz"


def test_an_npz_with_an_object_array_is_refused_without_unpickling(client, owner, digits, tmp_path,
                                                                   assert_nothing_stored):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    np.savez(path, payload=np.array([CreatesAFile(marker)], dtype=object))
    client.force_login(owner)

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
        check_upload(Submission.Source.FEATURES, path, benchmark="digits")


def test_an_npz_bomb_is_refused_from_its_headers(digits, tmp_path, monkeypatch):
    # was: a deflated 1 MB upload of zeros made the web process allocate and fill 1 GB
    monkeypatch.setattr(safeload, "MAX_FEATURE_DIM", 64)   # budget for digits: ~5.5 MB instead of ~475 MB
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.npy", npy_header((2**21,)) + b"\0" * 2**24)   # 16 MiB of zeros
    assert bomb.stat().st_size < 100_000

    read = []
    monkeypatch.setattr(np, "load", lambda *a, **k: read.append(a) or pytest.fail("np.load ran"))
    with pytest.raises(SubmissionRefused, match="16 MiB uncompressed, more than 1797 images of at most 64 values"):
        check_upload(Submission.Source.FEATURES, bomb, benchmark="digits")


def test_the_size_bound_accepts_real_features_at_the_dimension_limit(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(safeload, "MAX_FEATURE_DIM", 64)
    assert check_upload(Submission.Source.FEATURES, digits_features(tmp_path / "ok.npz", dim=64),
                        benchmark="digits").format == "npz"
    with pytest.raises(SubmissionRefused, match="uncompressed"):
        check_upload(Submission.Source.FEATURES, digits_features(tmp_path / "wide.npz", dim=1200), benchmark="digits")


def test_a_benchmark_without_data_here_is_refused(owner, digits):
    with pytest.raises(SubmissionRefused, match="not available on this installation"):
        submission_create(SubmissionRequest(owner=owner, model_name="x", source="builtin",
                                            architecture="efficientnet_lite0", benchmarks=["voc2007"]))
