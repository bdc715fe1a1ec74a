"""Dataset readers against tiny replicas in the official formats, and broken copies refused with
one clear line (in Python and through `python -m workers datasets check`)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from replicas import (
    make_caltech101,
    make_caltech256,
    make_cub200_2011,
    make_flowers102,
    make_holidays,
    make_mit67,
    make_oxford5k,
    make_paris6k,
    make_sun397,
    make_ukbench,
    make_voc2007,
)

from workers.benchmarks import load_dataset, official_benchmarks
from workers.datasets import DatasetError, describe, verify_images
from workers.datasets.base import ClassificationData, RetrievalData


def ids(records):
    return [record.id for record in records]


# ---- classification readers ------------------------------------------------------------------

def test_voc2007_reads_splits_and_three_valued_labels(tmp_path):
    replica = make_voc2007(tmp_path)
    data = load_dataset("voc2007", tmp_path)
    assert isinstance(data, ClassificationData) and data.multilabel and data.metric == "voc07_map"
    assert (data.train_split, data.test_split) == ("trainval", "test")
    assert data.classes == replica.classes and len(data.classes) == 20
    for split in ("trainval", "test"):
        assert ids(data.splits[split]) == replica.splits[split]
        assert data.labels[split].tolist() == replica.labels[split]
        assert set(np.unique(data.labels[split])) <= {-1, 0, 1}
        assert all(record.path.is_file() for record in data.splits[split])
    assert describe(data) == {"name": "voc2007", "images": 10, "classes": 20,
                              "splits": {"trainval": 6, "test": 4}, "metric": "voc07_map"}


def test_voc2007_refuses_missing_class_list_and_bad_label(tmp_path):
    make_voc2007(tmp_path)
    main = tmp_path / "VOCdevkit/VOC2007/ImageSets/Main"
    (main / "cow_test.txt").unlink()
    with pytest.raises(DatasetError, match=r"voc2007: .*cow_test.txt not found"):
        load_dataset("voc2007", tmp_path)
    (main / "cow_test.txt").write_text("000017  1\n000019  2\n000021 -1\n000023 -1\n")
    with pytest.raises(DatasetError, match=r"cow_test.txt line 2 malformed"):
        load_dataset("voc2007", tmp_path)


def test_mit67_reads_whole_lines_with_spaces_and_crlf(tmp_path):
    replica = make_mit67(tmp_path)
    data = load_dataset("mit67", tmp_path)
    assert data.classes == replica.classes
    assert ids(data.splits["train"]) == replica.splits["train"]
    assert ids(data.splits["test"]) == replica.splits["test"]
    assert data.labels["train"].tolist() == replica.labels["train"]
    assert any(" " in record.id for record in data.splits["train"])
    assert describe(data)["splits"] == {"train": 9, "test": 6}
    assert describe(data)["images"] == 15          # the unused images are not counted


def test_mit67_refuses_missing_image_and_malformed_line(tmp_path):
    make_mit67(tmp_path)
    (tmp_path / "Images/kitchen/kitchen_002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"mit67: image .*kitchen_002.jpg not found"):
        load_dataset("mit67", tmp_path)
    (tmp_path / "TrainImages.txt").write_text("kitchen_without_class.jpg\n")
    with pytest.raises(DatasetError, match=r"TrainImages.txt line 1 malformed"):
        load_dataset("mit67", tmp_path)


def test_cub_reads_labels_splits_and_boxes(tmp_path):
    replica = make_cub200_2011(tmp_path)
    data = load_dataset("cub200_2011", tmp_path)
    assert data.classes == replica.classes
    for split in ("train", "test"):
        assert ids(data.splits[split]) == replica.splits[split]
        assert data.labels[split].tolist() == replica.labels[split]
    first = data.splits["train"][0]
    assert first.box == (1.0, 2.0, 1.0 + 3.0, 2.0 + 4.0)       # x y w h -> x1 y1 x2 y2
    (tmp_path / "CUB_200_2011/bounding_boxes.txt").write_text("1 1 2 3\n")
    with pytest.raises(DatasetError, match=r"bounding_boxes.txt line 1 malformed"):
        load_dataset("cub200_2011", tmp_path)


def test_flowers_reads_official_mat_files(tmp_path):
    replica = make_flowers102(tmp_path)
    raw = scipy.io.loadmat(tmp_path / "imagelabels.mat")["labels"]
    assert raw.shape == (1, replica.images)                        # 1 x 8189 in the real file
    data = load_dataset("flowers102", tmp_path)
    assert set(data.splits) == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        assert ids(data.splits[split]) == replica.splits[split]
        assert data.labels[split].tolist() == replica.labels[split]
    assert describe(data)["splits"] == {"train": 6, "val": 3, "test": 6}


def test_flowers_refuses_wrong_variables_and_missing_images(tmp_path):
    make_flowers102(tmp_path)
    scipy.io.savemat(str(tmp_path / "setid.mat"), {"trnid": np.array([[1, 2]]), "valid": np.array([[3]])})
    with pytest.raises(DatasetError, match=r"setid.mat has no variable 'tstid'"):
        load_dataset("flowers102", tmp_path)
    scipy.io.savemat(str(tmp_path / "setid.mat"),
                     {"trnid": np.array([[1]]), "valid": np.array([[2]]), "tstid": np.array([[99]])})
    with pytest.raises(DatasetError, match=r"outside 1\.\.15"):
        load_dataset("flowers102", tmp_path)
    (tmp_path / "setid.mat").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"not a readable .mat file"):
        load_dataset("flowers102", tmp_path)


def test_sun397_reads_ten_partitions_or_one(tmp_path):
    replica = make_sun397(tmp_path)
    data = load_dataset("sun397", tmp_path)
    assert data.partitions == 10
    assert set(data.splits) == {f"{kind}_{k}" for kind in ("train", "test") for k in range(1, 11)}
    assert (data.train_split, data.test_split) == ("train_1", "test_1")
    assert data.classes == ["a/abbey", "b/bakery/shop", "c/canyon"]
    assert ids(data.splits["test_7"]) == replica.splits["test_7"]
    assert data.labels["train_3"].tolist() == replica.labels["train_3"]
    one = load_dataset("sun397", tmp_path, partition=3)
    assert set(one.splits) == {"train", "test"} and one.partitions == 1
    assert ids(one.splits["train"]) == replica.splits["train_3"]
    with pytest.raises(DatasetError, match="partition must be 1..10"):
        load_dataset("sun397", tmp_path, partition=11)
    (tmp_path / "Partitions/Testing_10.txt").unlink()
    with pytest.raises(DatasetError, match=r"Testing_10.txt not found"):
        load_dataset("sun397", tmp_path)


def test_caltech_split_is_seeded_deterministic_and_disjoint(tmp_path):
    replica = make_caltech101(tmp_path)
    first = load_dataset("caltech101", tmp_path, seed=1, train_per_class=3, test_per_class=2)
    again = load_dataset("caltech101", tmp_path, seed=1, train_per_class=3, test_per_class=2)
    other = load_dataset("caltech101", tmp_path, seed=2, train_per_class=3, test_per_class=2)
    assert first.classes == replica.classes                      # BACKGROUND_Google left out
    assert ids(first.splits["train"]) == ids(again.splits["train"])
    assert ids(first.splits["train"]) != ids(other.splits["train"])
    assert not set(ids(first.splits["train"])) & set(ids(first.splits["test"]))
    assert np.bincount(first.labels["train"]).tolist() == [3, 3, 3]
    assert np.bincount(first.labels["test"]).tolist() == [2, 2, 2]   # capped, as 50 for the real set
    assert first.info["seed"] == 1
    with pytest.raises(DatasetError, match=r"class class_0 has 5 images"):
        load_dataset("caltech101", tmp_path, train_per_class=5)


def test_caltech256_tests_on_the_rest_without_clutter(tmp_path):
    replica = make_caltech256(tmp_path)
    data = load_dataset("caltech256", tmp_path, train_per_class=2)
    assert data.classes == replica.classes
    assert np.bincount(data.labels["test"]).tolist() == [n - 2 for n in replica.extra["per_class"]]
    with_clutter = load_dataset("caltech256", tmp_path, train_per_class=2, include_clutter=True)
    assert "257.clutter" in with_clutter.classes


# ---- retrieval readers -----------------------------------------------------------------------

def test_holidays_queries_are_the_00_images(tmp_path):
    replica = make_holidays(tmp_path)
    data = load_dataset("holidays", tmp_path)
    assert isinstance(data, RetrievalData) and data.metric == "holidays_map"
    assert ids(data.database) == replica.splits["database"]
    assert [q.id for q in data.queries] == replica.queries
    assert data.queries[0].good == ["100001", "100002"]
    assert describe(data) == {"name": "holidays", "images": 9, "queries": 3, "metric": "holidays_map"}
    (tmp_path / "jpg/100100.jpg").unlink()
    with pytest.raises(DatasetError, match="group 1001 has no query image 100100.jpg"):
        load_dataset("holidays", tmp_path)


@pytest.mark.parametrize("gt_in_root", [False, True])
def test_oxford5k_reads_boxes_and_ground_truth(tmp_path, gt_in_root):
    replica = make_oxford5k(tmp_path, gt_in_root=gt_in_root)
    data = load_dataset("oxford5k", tmp_path)
    assert data.metric == "oxford_map" and len(data.database) == replica.images
    assert [q.name for q in data.queries] == sorted(replica.queries)
    query = data.queries[0]
    truth = replica.extra["ground_truth"][query.name]
    assert query.id == truth["query"] and query.image.box == (1.5, 2.0, 6.5, 7.0)
    assert (query.good, query.ok, query.junk) == (truth["good"], truth["ok"], truth["junk"])
    assert not query.id.startswith("oxc1_")


def test_oxford5k_refuses_missing_ground_truth_file_and_bad_query_line(tmp_path):
    make_oxford5k(tmp_path)
    gt = tmp_path / "gt_files_170407"
    (gt / "ashmolean_2_junk.txt").unlink()
    with pytest.raises(DatasetError, match=r"ashmolean_2_junk.txt not found"):
        load_dataset("oxford5k", tmp_path)
    (gt / "ashmolean_2_junk.txt").write_text("")
    (gt / "balliol_1_query.txt").write_text("oxc1_balliol_000000 1 2 3\n")
    with pytest.raises(DatasetError, match=r"balliol_1_query.txt line 1 malformed"):
        load_dataset("oxford5k", tmp_path)


def test_paris6k_skips_and_reports_corrupt_images(tmp_path):
    replica = make_paris6k(tmp_path, corrupt=2)
    data = load_dataset("paris6k", tmp_path)
    assert len(data.database) == replica.images
    assert sorted(data.info["skipped"]) == sorted(replica.extra["corrupt"])
    assert not set(replica.extra["corrupt"]) & set(ids(data.database))
    assert describe(data)["skipped"] == 2
    assert data.queries[0].id.startswith("paris_")


def test_ukbench_groups_of_four(tmp_path):
    make_ukbench(tmp_path)
    data = load_dataset("ukbench", tmp_path)
    assert len(data.database) == len(data.queries) == 12
    assert data.queries[5].good == ["ukbench00004", "ukbench00005", "ukbench00006", "ukbench00007"]
    (tmp_path / "full/ukbench00006.jpg").unlink()
    with pytest.raises(DatasetError, match=r"group 1 \(ukbench00004-ukbench00007.jpg\) is incomplete"):
        load_dataset("ukbench", tmp_path)


def test_registry_names_and_unknown_options(tmp_path):
    assert set(official_benchmarks()) == {"voc2007", "mit67", "cub200_2011", "flowers102", "sun397", "caltech101",
                                          "caltech256", "holidays", "oxford5k", "paris6k", "ukbench", "roxford5k",
                                          "rparis6k", "imagenet1k"}
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("imagenet", tmp_path)
    with pytest.raises(DatasetError, match="unknown option 'seed'"):
        load_dataset("mit67", tmp_path, seed=3)


def test_verify_images_finds_undecodable_files(tmp_path):
    make_mit67(tmp_path)
    data = load_dataset("mit67", tmp_path)
    assert verify_images(data) == []
    (tmp_path / "Images/bakery/bakery_001.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert [p.endswith("bakery_001.jpg") for p in verify_images(data)] == [True]


# ---- the CLI ---------------------------------------------------------------------------------

def test_cli_check_prints_one_json_object(tmp_path, run_cli):
    make_voc2007(tmp_path)
    result = run_cli("datasets", "check", "voc2007", tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["images"] == 10 and summary["splits"] == {"trainval": 6, "test": 4}


def test_cli_check_options_and_verify_images(tmp_path, run_cli):
    make_caltech101(tmp_path)
    result = run_cli("datasets", "check", "caltech101", tmp_path, "-o", "train_per_class=2", "--verify-images")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["splits"] == {"train": 6, "test": 12}
    (tmp_path / "101_ObjectCategories/class_1/image_0003.jpg").write_bytes(b"broken")
    quick = run_cli("datasets", "check", "caltech101", tmp_path, "-o", "train_per_class=2")
    assert quick.returncode == 0                        # existence only, no decoding
    full = run_cli("datasets", "check", "caltech101", tmp_path, "-o", "train_per_class=2", "--verify-images")
    assert full.returncode == 1 and "image_0003.jpg cannot be decoded" in full.stderr


@pytest.mark.parametrize(
    "name, make, breakage, message",
    [
        ("mit67", make_mit67, lambda root: (root / "TestImages.txt").unlink(), "TestImages.txt not found"),
        ("mit67", make_mit67, lambda root: (root / "Images/bakery/bakery_003.jpg").unlink(),
         "bakery_003.jpg not found"),
        ("cub200_2011", make_cub200_2011,
         lambda root: (root / "CUB_200_2011/train_test_split.txt").write_text("1 one\n"), "malformed"),
        ("flowers102", make_flowers102, lambda root: (root / "imagelabels.mat").unlink(), "imagelabels.mat not found"),
        ("ukbench", make_ukbench, lambda root: (root / "full/ukbench00011.jpg").unlink(), "incomplete"),
    ],
)
def test_cli_refuses_broken_copies_with_one_line(tmp_path, run_cli, name, make, breakage, message):
    make(tmp_path)
    breakage(tmp_path)
    result = run_cli("datasets", "check", name, tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {name}: ") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_missing_root_and_list(tmp_path, run_cli):
    result = run_cli("datasets", "check", "mit67", tmp_path / "nowhere")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: mit67: {tmp_path / 'nowhere'} not found"
    listing = run_cli("datasets", "list")
    assert listing.returncode == 0
    assert [line.split("\t")[0] for line in listing.stdout.splitlines()] == official_benchmarks()


def test_voc2007_refuses_class_list_that_disagrees_with_the_split(tmp_path):
    make_voc2007(tmp_path)
    main = tmp_path / "VOCdevkit/VOC2007/ImageSets/Main"
    lines = (main / "dog_trainval.txt").read_text().splitlines()
    (main / "dog_trainval.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DatasetError, match=r"dog_trainval.txt and trainval.txt list different images"):
        load_dataset("voc2007", tmp_path)
