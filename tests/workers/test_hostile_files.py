"""Hostile files the earlier checks let through (found in review): compressed torch archives, encrypted
or exotically compressed model folders, zip bombs, sparse ONNX tensors stored elsewhere, features of
complex numbers or absurd lengths, and ground-truth pickles calling codecs. Each is refused, typed."""
from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest
import torch

from workers import safeload
from workers.contract import FeaturesMismatch, MalformedUpload, UnsafeUpload, UploadTooLarge
from workers.uploads import MODEL_FOLDER, ONNX, inspect_upload


def _rezip(source, target, compression):
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", compression) as new:
        for member in old.infolist():
            new.writestr(member.filename, old.read(member))
    return target


def test_a_torch_archive_with_deflated_members_is_refused_before_torch_reads_it(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(4096)}, plain)
    assert safeload.load_state_dict(plain)["w"].shape == (4096,)     # torch.save's own file loads
    packed = _rezip(plain, tmp_path / "packed.pt", zipfile.ZIP_DEFLATED)
    assert safeload.sniff_format(packed) == safeload.TORCH_ZIP
    with pytest.raises(MalformedUpload, match="compressed or encrypted member .*data.pkl"):
        safeload.load_state_dict(packed)


def _set_encrypted_flag(path):
    """Set bit 0 (encrypted) of every member's flags, in the local and the central headers."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)
        while start != -1:
            data[start + offset] |= 1
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))


def test_model_folders_encrypted_or_compressed_other_than_deflate_are_refused(tmp_path):
    files = {"config.json": b'{"architecture": "test_vit"}', "model.safetensors": b"x" * 64}
    encrypted = tmp_path / "encrypted.zip"
    with zipfile.ZipFile(encrypted, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    _set_encrypted_flag(encrypted)
    with pytest.raises(MalformedUpload, match="encrypted file"):
        safeload.extract_model_folder(encrypted, tmp_path / "a", max_bytes=2**20)
    bzip = tmp_path / "bzip.zip"
    with zipfile.ZipFile(bzip, "w", zipfile.ZIP_BZIP2) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    with pytest.raises(MalformedUpload, match="other than deflate"):
        safeload.extract_model_folder(bzip, tmp_path / "b", max_bytes=2**20)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_model_folder_that_unpacks_to_many_times_its_size_is_a_bomb(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b'{"architecture": "test_vit"}')
        archive.writestr("model.safetensors", b"\0" * (40 * 2**20))      # 40 MiB of zeros: ~40 KiB deflated
    assert bomb.stat().st_size < 2**20
    with pytest.raises(UploadTooLarge, match="unpacks to more than"):
        inspect_upload(MODEL_FOLDER, bomb, folder_into=tmp_path / "model")   # the 8 GiB default is not the bound
    assert not (tmp_path / "model").exists()


def test_a_sparse_onnx_tensor_stored_in_an_external_file_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    values = TensorProto(name="v", data_type=TensorProto.FLOAT, dims=[2], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "/etc/hostname"), ("offset", "0"), ("length", "8")):
        entry = values.external_data.add()
        entry.key, entry.value = key, value
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(np.array([0, 1], dtype=np.int64), "i"), [4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], sparse_initializer=[sparse])
    path = tmp_path / "sparse.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    with pytest.raises(UnsafeUpload, match="keeps tensor 'v' in an external file"):
        inspect_upload(ONNX, path)
    # the same as a sparse node attribute (a Constant's sparse_value), inside an If's branch
    constant = helper.make_node("Constant", [], ["c"], sparse_value=sparse)
    branch = helper.make_graph([constant], "then", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    with pytest.raises(UnsafeUpload, match="keeps tensor 'v' in an external file"):
        inspect_upload(ONNX, path)


def test_features_of_complex_numbers_or_absurd_length_are_refused_and_byte_ids_are_read(tmp_path):
    complex_ = tmp_path / "complex.npz"
    np.savez(complex_, a=np.ones(4, dtype=np.complex64), b=np.ones(4, dtype=np.complex64))
    with pytest.raises(FeaturesMismatch, match="real numbers.*complex64"):
        safeload.read_features(complex_, max_images=2)
    long = tmp_path / "long.npz"
    np.savez(long, a=np.ones(safeload.MAX_FEATURE_DIM + 1, dtype=np.float16))
    with pytest.raises((FeaturesMismatch, UploadTooLarge), match="values"):
        safeload.read_features(long, max_images=4)
    byte_ids = tmp_path / "bytes.npz"
    np.savez(byte_ids, ids=np.array([b"img-1", b"img-2"]), features=np.ones((2, 3), dtype=np.float32))
    assert sorted(safeload.read_features(byte_ids, max_images=2).vectors) == ["img-1", "img-2"]


def test_a_ground_truth_pickle_may_call_codecs_only_as_numpy_does(tmp_path):
    # _codecs.encode("...", "rot13"): an allowed global used with another codec
    rot13 = tmp_path / "rot13.pkl"
    rot13.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(UnsafeUpload, match="_codecs.encode other than as numpy"):
        safeload.load_ground_truth_pickle(rot13)
    numpy_made = tmp_path / "numpy.pkl"
    numpy_made.write_bytes(pickle.dumps({"gnd": [{"easy": np.arange(3)}]}, protocol=2))   # uses _codecs.encode
    assert b"_codecs" in numpy_made.read_bytes()
    assert safeload.load_ground_truth_pickle(numpy_made)["gnd"][0]["easy"].tolist() == [0, 1, 2]
