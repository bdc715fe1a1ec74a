"""ImageNet-1k (ILSVRC-2012) in the official layout: the reader on a generated replica, clear errors
for missing pieces, fetch from local-mirror archives (checksums, the tar of per-class tars, hostile
inner members), the default protocols, and one end-to-end evaluation."""
from __future__ import annotations

import hashlib
import json
import shutil
import tarfile

import numpy as np
import pytest
from imagenet_replica import KNOWN_CLASSES, NON_LEAF, TRAIN_ARCHIVE, VAL_ARCHIVE, tar_bytes, write_imagenet_replica

from workers import protocol_catalog
from workers.benchmarks import get_benchmark, load_dataset
from workers.contract import EngineError, EvaluationSpec
from workers.datasets import describe, installed, verify_images
from workers.datasets.archives import ArchiveRefused, extract_nested
from workers.datasets.base import DatasetError
from workers.datasets.fetch import ChecksumMismatch, fetch
from workers.datasets.sources import SOURCES_FILE, load_sources, parse_table

QUIET = {"say": lambda line: None}
WNIDS, ABOVE = [wnid for wnid, _ in KNOWN_CLASSES], NON_LEAF[0][0]      # the replica's classes; a non-leaf


def ids(records):
    return [record.id for record in records]


def _tree(root):
    """Every path under `root` with its bytes' sha256 (folders as None): what 'nothing changed' compares."""
    return {str(path.relative_to(root)): None if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*"))}


@pytest.fixture
def extracted(tmp_path):
    replica = write_imagenet_replica(tmp_path / "root", archives=False, extracted=True)
    return replica, tmp_path / "root"


# ---- the reader ---------------------------------------------------------------------------------

def test_reader_gives_leaf_classes_in_id_order_and_val_labels_from_the_ground_truth(extracted):
    replica, root = extracted
    data = load_dataset("imagenet1k", root)

    assert data.name == "imagenet1k" and data.metric == "mean_class_accuracy"
    assert (data.train_split, data.test_split) == ("train", "val")
    assert data.classes == replica.wnids and data.classes != sorted(data.classes)   # ID order, not WNID order
    assert not set(replica.non_leaf) & set(data.classes)                         # num_children > 0 ignored
    assert data.info["class_words"] == replica.words
    assert ids(data.splits["train"]) == replica.train
    assert data.labels["train"].tolist() == replica.train_labels
    assert ids(data.splits["val"]) == replica.val and replica.val[0] == "val/ILSVRC2012_val_00000001"
    assert data.labels["val"].tolist() == replica.val_labels
    assert data.labels["val"].tolist() != sorted(replica.val_labels)              # the shuffled ground truth
    assert data.info["top1_equals_mean_class_accuracy"] is True and data.info["val_per_class"] == 3
    assert all(record.path.is_file() for split in data.splits.values() for record in split)
    assert describe(data) == {"name": "imagenet1k", "images": 36, "classes": 4,
                              "splits": {"train": 24, "val": 12}, "metric": "mean_class_accuracy"}
    assert verify_images(data) == []


def test_torchvision_layout_is_read_with_the_same_ids_and_its_folders_checked(tmp_path):
    # torchvision's ImageNet leaves val/<wnid>/ILSVRC2012_val_*.JPEG and the devkit as its archive
    replica = write_imagenet_replica(tmp_path, archives=True, extracted=True)
    shutil.rmtree(tmp_path / "ILSVRC2012_devkit_t12")
    for number, label in enumerate(replica.val_labels, start=1):
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        (tmp_path / "val" / replica.wnids[label]).mkdir(exist_ok=True)
        (tmp_path / "val" / name).rename(tmp_path / "val" / replica.wnids[label] / name)

    data = load_dataset("imagenet1k", tmp_path)

    assert data.info["val_layout"] == "per_class" and data.info["devkit"].endswith("ILSVRC2012_devkit_t12.tar.gz")
    assert ids(data.splits["val"]) == replica.val and data.labels["val"].tolist() == replica.val_labels
    wrong = replica.wnids[(replica.val_labels[0] + 1) % len(replica.wnids)]
    first = "ILSVRC2012_val_00000001.JPEG"
    (tmp_path / "val" / replica.wnids[replica.val_labels[0]] / first).rename(tmp_path / "val" / wrong / first)
    with pytest.raises(DatasetError, match=rf"{first} is in {wrong}/ but the ground truth says"):
        load_dataset("imagenet1k", tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda root, r: shutil.rmtree(root / "ILSVRC2012_devkit_t12"),
     r"the devkit is not in .*: neither ILSVRC2012_devkit_t12/ .* nor ILSVRC2012_devkit_t12.tar.gz"),
    (lambda root, r: (root / "ILSVRC2012_devkit_t12/data/meta.mat").unlink(), r"data/meta.mat not found"),
    (lambda root, r: (root / "ILSVRC2012_devkit_t12/data/meta.mat").write_bytes(b"not a mat file"),
     r"meta.mat is not a readable MATLAB file"),
    (lambda root, r: (root / "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt").unlink(),
     r"ILSVRC2012_validation_ground_truth.txt not found"),
    (lambda root, r: (root / "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt")
     .write_text("1\n2\n5\n"), r"line 3: ILSVRC2012_ID 5 is not a leaf synset"),
    (lambda root, r: shutil.rmtree(root / "train"), r"train not found \(ILSVRC2012_img_train.tar"),
    (lambda root, r: shutil.rmtree(root / "train" / r.wnids[2]),
     rf"class folder .*train/{WNIDS[2]}/ not found: the devkit lists 4 classes, train/ holds 3 of them"),
    (lambda root, r: (root / "train" / r.non_leaf[0]).mkdir(),
     rf"train/{ABOVE}/ is not a class the devkit lists"),
    (lambda root, r: [path.unlink() for path in (root / "train" / r.wnids[1]).iterdir()],
     rf"train/{WNIDS[1]}/ holds no JPEG image"),
    (lambda root, r: shutil.rmtree(root / "val"), r"val not found \(ILSVRC2012_img_val.tar"),
    (lambda root, r: [(root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG").unlink() for n in (5, 9)],
     r"val image ILSVRC2012_val_00000005.JPEG not found in .* \(and 1 more\); the ground truth lists 12"),
    (lambda root, r: (root / "val" / "ILSVRC2012_val_00000013.JPEG").write_bytes(b"x"),
     r"ILSVRC2012_val_00000013.JPEG has no line in the ground truth \(12 lines\)"),
    (lambda root, r: (root / "val" / "holiday.jpg").write_bytes(b"x"),
     r"holiday.jpg is not named ILSVRC2012_val_<8 digits>.JPEG"),
])
def test_a_missing_or_broken_piece_is_one_clear_line(extracted, damage, message):
    replica, root = extracted
    load_dataset("imagenet1k", root)            # whole: it reads
    damage(root, replica)
    with pytest.raises(DatasetError, match=rf"^imagenet1k: .*{message}"):
        load_dataset("imagenet1k", root)


def test_datasets_check_prints_the_counts(extracted, run_cli):
    _, root = extracted
    checked = run_cli("datasets", "check", "imagenet1k", root)
    assert checked.returncode == 0, checked.stderr
    assert '"images": 36' in checked.stdout and '"classes": 4' in checked.stdout
    shutil.rmtree(root / "val")
    broken = run_cli("datasets", "check", "imagenet1k", root)
    assert broken.returncode != 0 and "val not found" in broken.stderr + broken.stdout


# ---- fetching from the official archives --------------------------------------------------------

def test_the_project_table_records_torchvisions_md5s_and_needs_a_mirror():
    source = load_sources()["imagenet1k"]
    archives = {archive.name: archive for archive in source.archives}
    assert {name: archive.digests["md5"] for name, archive in archives.items()} == {
        "ILSVRC2012_img_train.tar": "1d675b47d978889d74fa0da5fadfb00e",
        "ILSVRC2012_img_val.tar": "29b22e2961454d5413ddabcf34fc5622",
        "ILSVRC2012_devkit_t12.tar.gz": "fa75699e90414af021442c21a62c3abf",
    }
    assert archives[TRAIN_ARCHIVE].nested and archives[TRAIN_ARCHIVE].into == "train"
    assert archives[VAL_ARCHIVE].into == "val" and not archives[VAL_ARCHIVE].nested
    assert source.unavailable and not any(archive.urls for archive in source.archives)
    with pytest.raises(DatasetError, match="nested must be"):
        parse_table({"benchmarks": {"x": {"archives": [{"name": "a.zip", "url": "http://h/a.zip", "nested": True,
                                                        "checksum": None, "note": "n"}]}}})


def test_without_a_mirror_fetch_says_how_to_give_the_lab_copy(tmp_path):
    with pytest.raises(DatasetError, match=r"signed-in users .*--mirror ILSVRC2012_img_train.tar=URL .*"
                                           r"each is verified against its recorded checksum"):
        fetch("imagenet1k", tmp_path / "root", **QUIET)
    assert not (tmp_path / "root").exists()


def test_fetch_from_local_archives_verifies_extracts_the_tar_of_tars_and_keeps_the_archives(tmp_path):
    replica = write_imagenet_replica(tmp_path / "lab")
    table = replica.sources_table(tmp_path / "sources.json")
    before = _tree(tmp_path / "lab")
    root = tmp_path / "root"
    said = []

    summary = fetch("imagenet1k", root, sources_file=table, say=said.append)

    assert summary == describe(load_dataset("imagenet1k", root)) and summary["images"] == replica.images
    assert sorted(path.name for path in root.iterdir()) == [installed.RECORD, "ILSVRC2012_devkit_t12", "train", "val"]
    assert sorted(path.name for path in (root / "train").iterdir()) == sorted(replica.wnids)   # no <wnid>.tar left
    assert all(path.is_file() for path in (root / "train" / replica.wnids[0]).iterdir())
    data = load_dataset("imagenet1k", root)
    assert ids(data.splits["train"]) == replica.train and data.labels["val"].tolist() == replica.val_labels
    assert any("md5 and sha256 verified" in line for line in said)
    assert any("where it is (not copied)" in line for line in said)
    assert _tree(tmp_path / "lab") == before                   # the lab's archives: read, never moved or deleted
    record = installed.read_record(root)["benchmarks"]["imagenet1k"]
    assert record["verified"] is True
    assert {entry["name"]: entry["md5"] for entry in record["archives"]} == replica.md5


def test_the_cli_fetches_with_a_plain_path_as_mirror_then_checks(tmp_path, run_cli):
    replica = write_imagenet_replica(tmp_path / "lab")
    table = replica.sources_table(tmp_path / "sources.json")
    moved = tmp_path / "elsewhere" / TRAIN_ARCHIVE         # not where the table's file:// URL points
    moved.parent.mkdir()
    replica.archives[TRAIN_ARCHIVE].rename(moved)
    root = tmp_path / "root"

    fetched = run_cli("datasets", "fetch", "imagenet1k", root, "--sources", table,
                      "--mirror", f"{TRAIN_ARCHIVE}={moved}")

    assert fetched.returncode == 0, fetched.stderr + fetched.stdout
    assert json.loads(fetched.stdout.splitlines()[-1])["images"] == replica.images
    assert f"reading {moved} where it is" in fetched.stdout and moved.is_file()
    assert sorted(path.name for path in (root / "train").iterdir()) == sorted(replica.wnids)


def test_the_official_table_refuses_the_replica_and_root_keeps_what_it_held(tmp_path):
    replica = write_imagenet_replica(tmp_path / "lab")
    root = tmp_path / "root"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "keep.txt").write_text("mine")
    before, lab = _tree(root), _tree(tmp_path / "lab")

    with pytest.raises(ChecksumMismatch, match=r"ILSVRC2012_img_train.tar is \d+ bytes where 147897477120 are "
                                               r"recorded .* left as it is and nothing was extracted"):
        fetch("imagenet1k", root, mirrors=replica.mirrors(), **QUIET)

    assert _tree(root) == before and _tree(tmp_path / "lab") == lab


def test_a_wrong_checksum_is_refused_and_nothing_of_root_is_lost(tmp_path):
    replica = write_imagenet_replica(tmp_path / "lab")
    table = replica.sources_table(tmp_path / "sources.json", wrong=VAL_ARCHIVE)
    root = tmp_path / "root"
    (root / "train").mkdir(parents=True)
    (root / "train" / "README").write_text("a file of the lab's")
    before, lab = _tree(root), _tree(tmp_path / "lab")

    with pytest.raises(ChecksumMismatch, match=r"checksum mismatch: the md5 of .*ILSVRC2012_img_val.tar is "
                                               r"[0-9a-f]{32}, the recorded one is 0{32}"):
        fetch("imagenet1k", root, sources_file=table, **QUIET)

    assert _tree(root) == before and _tree(tmp_path / "lab") == lab


def _outer_with(replica, inner_name: str, members: dict[str, bytes]) -> bytes:
    """The replica's train archive with one more inner tar holding `members`."""
    with tarfile.open(replica.archives[TRAIN_ARCHIVE]) as outer:
        inner = {member.name: outer.extractfile(member).read() for member in outer}
    inner[inner_name] = tar_bytes(members)
    return tar_bytes(inner)


@pytest.mark.parametrize("inner_name, members, message", [
    ("n09999999.tar", {"../../escape.JPEG": b"owned"}, r"member '../../escape.JPEG' climbs out of its folder"),
    ("n09999999.tar", {"/tmp/escape.JPEG": b"owned"}, r"member '/tmp/escape.JPEG' has an absolute path"),
    ("../n09999999.tar", {"a.JPEG": b"x"}, r"member '../n09999999.tar' climbs out"),
    ("....tar", {"a.JPEG": b"x"}, r"is not a <name>.tar"),
    ("notes.txt", {}, r"member 'notes.txt' is not a <name>.tar"),
])
def test_a_hostile_member_of_the_tar_of_tars_is_refused(tmp_path, inner_name, members, message):
    replica = write_imagenet_replica(tmp_path / "lab")
    hostile = _outer_with(replica, inner_name, members)
    replica.archives[TRAIN_ARCHIVE].write_bytes(hostile)
    replica.md5[TRAIN_ARCHIVE] = hashlib.md5(hostile).hexdigest()
    replica.sha256[TRAIN_ARCHIVE] = hashlib.sha256(hostile).hexdigest()
    replica.sizes[TRAIN_ARCHIVE] = len(hostile)
    table = replica.sources_table(tmp_path / "sources.json")      # verified: hostile, not corrupt
    root = tmp_path / "data" / "root"

    with pytest.raises(ArchiveRefused, match=rf"{message}.*nothing was extracted.* was left as it is"):
        fetch("imagenet1k", root, sources_file=table, **QUIET)

    assert sorted(path.name for path in root.iterdir()) == []      # no staging folder, no train/
    assert not list((tmp_path / "data").rglob("escape.JPEG")) and not (tmp_path / "escape.JPEG").exists()
    assert replica.archives[TRAIN_ARCHIVE].read_bytes() == hostile            # the lab's file is not deleted


def test_inner_tars_extract_into_their_folders_within_one_byte_bound(tmp_path):
    archive = tmp_path / "train.tar"
    archive.write_bytes(tar_bytes({"n00000001.tar": tar_bytes({"a.JPEG": b"1" * 600}),
                                   "n00000002.tar": tar_bytes({"n00000002/b.JPEG": b"2" * 600})}))
    written = extract_nested(archive, tmp_path / "out", label="t", max_bytes=2000, into="train")
    assert written == 1200
    assert (tmp_path / "out/train/n00000001/a.JPEG").read_bytes() == b"1" * 600
    assert (tmp_path / "out/train/n00000002/b.JPEG").is_file()       # a folder of its own name is not nested
    with pytest.raises(ArchiveRefused, match="unpacks to more than 1000 bytes"):
        extract_nested(archive, tmp_path / "again", label="t", max_bytes=1000, into="train")   # 600 + 600
    twice = tmp_path / "twice.tar"
    twice.write_bytes(tar_bytes({"x/n1.tar": tar_bytes({"a.JPEG": b"1"}), "y/n1.tar": tar_bytes({"b.JPEG": b"2"})}))
    with pytest.raises(ArchiveRefused, match="two members are named 'n1.tar'"):
        extract_nested(twice, tmp_path / "twice", label="t", max_bytes=2000)
    empties = tmp_path / "empties.tar"   # inner tars with nothing in them still make folders: they count
    empties.write_bytes(tar_bytes({f"n{i:08d}.tar": tar_bytes({}) for i in range(5)}))
    with pytest.raises(ArchiveRefused, match="holds more than 4 members"):
        extract_nested(empties, tmp_path / "empties", label="t", max_bytes=2000, max_members=4)


# ---- protocols and one evaluation ---------------------------------------------------------------

def test_imagenet_defaults_are_linear_probe_then_knn_and_svm_stays_requestable():
    benchmark = get_benchmark("imagenet1k")
    assert (benchmark.kind, benchmark.metric) == ("classification", "mean_class_accuracy")
    assert benchmark.layout == "train/<wnid>/, val/, ILSVRC2012_devkit_t12/"

    def resolve(requested):
        return protocol_catalog.resolve(benchmark.kind, benchmark.metric, requested, benchmark="imagenet1k")

    assert resolve(None) == ["linear_probe", "knn"]
    assert resolve(["svm"]) == ["svm"]
    assert protocol_catalog.resolve("classification", "mean_class_accuracy", None, benchmark="mit67") == [
        "svm", "knn", "linear_probe"]
    with pytest.raises(EngineError, match="cannot run protocol 'ranking'"):
        resolve(["ranking"])


def test_an_evaluation_on_the_replica_runs_linear_probe_and_knn(tmp_path, colour_onnx):
    from workers.evaluate import run_evaluation

    root = tmp_path / "root"
    replica = write_imagenet_replica(root, classes=4, train_per_class=8, val_per_class=4, archives=False,
                                     extracted=True)
    result = run_evaluation(EvaluationSpec(benchmark="imagenet1k", onnx=colour_onnx, data_root=root, num_workers=0))

    assert [entry["name"] for entry in result.protocols] == ["linear_probe", "knn"]
    assert result.benchmark == "imagenet1k" and result.metric == "mean_class_accuracy"
    assert set(result.per_class) == set(replica.wnids)
    assert result.score == result.protocols[0]["score"] >= 0.9      # the classes' colours separate them
    assert all(entry["score"] >= 0.9 for entry in result.protocols)
    assert result.provenance["benchmark_info"]["top1_equals_mean_class_accuracy"] is True


@pytest.fixture
def colour_onnx(tmp_path):
    from tests.workers.test_models import _global_average_pool_onnx

    _global_average_pool_onnx(tmp_path / "gap.onnx")
    return tmp_path / "gap.onnx"


def test_the_replica_is_deterministic_and_its_table_matches_the_projects_layout(tmp_path):
    first = write_imagenet_replica(tmp_path / "a")
    second = write_imagenet_replica(tmp_path / "b")
    assert first.md5 == second.md5 and first.train == second.train
    table = json.loads(first.sources_table(tmp_path / "t.json").read_text())["benchmarks"]["imagenet1k"]
    project = json.loads(SOURCES_FILE.read_text())["benchmarks"]["imagenet1k"]
    assert [(a["name"], a.get("into"), a.get("nested")) for a in table["archives"]] == [
        (a["name"], a.get("into"), a.get("nested")) for a in project["archives"]]
    assert np.unique(first.val_labels, return_counts=True)[1].tolist() == [3, 3, 3, 3]
