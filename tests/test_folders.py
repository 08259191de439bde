"""ImageFolder test sets from folders and zips, readable class names, open_test_set (CIFAR included)."""

from __future__ import annotations

import io
import shutil
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from miniclip.data.folders import (
    CIFAR10_CLASSES,
    FileTree,
    ImageFolderDataset,
    open_test_set,
    readable_class_name,
)
from miniclip.data.paths import MissingDataError, data_root
from miniclip.data.transforms import PairCollator, eval_transform

CLASSES = ["aquarium_fish", "cat", "dog"]


def _jpeg(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), colour).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    """pets/test/<class>/<n>.jpg, 2 images per class; pets/train/cat/0.jpg; one corrupt test image."""
    root = tmp_path / "pets"
    for k, name in enumerate(CLASSES):
        (root / "test" / name).mkdir(parents=True)
        for n in range(2):
            (root / "test" / name / f"{n}.jpg").write_bytes(_jpeg((80 * k, 40 * n, 0)))
    (root / "test" / "dog" / "broken.jpg").write_bytes(_jpeg((0, 0, 0))[:60])
    (root / "test" / "notes.txt").write_text("not an image")
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "cat" / "0.jpg").write_bytes(_jpeg((1, 2, 3)))
    return root


def _zip_folder(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder.parent).as_posix())  # keeps a top-level folder inside
    return zip_path


def test_readable_class_names():
    assert readable_class_name("aquarium_fish") == "aquarium fish"
    assert readable_class_name("automobile") == "automobile"
    assert readable_class_name("aeroplane") == "airplane"
    assert [readable_class_name(c) for c in CIFAR10_CLASSES] == list(CIFAR10_CLASSES)


def test_folder_and_zip_give_the_same_dataset(tiny_folder, tmp_path):
    zipped = _zip_folder(tiny_folder, tmp_path / "pets.zip")
    sets = [
        ImageFolderDataset(tiny_folder / "test"),
        ImageFolderDataset(zipped / "pets" / "test"),  # a folder inside a zip
        ImageFolderDataset(tiny_folder, prefer="test"),  # two roots (train, test): take test
        ImageFolderDataset(zipped, prefer="test"),
    ]
    for ds in sets:
        assert ds.classes == CLASSES and ds.class_names == ["aquarium fish", "cat", "dog"]
        assert len(ds) == 7 and Counter(ds.targets) == {0: 2, 1: 2, 2: 3}
    assert [Path(f).name for f in sets[0].files] == [Path(f).name for f in sets[1].files]


def test_several_roots_without_preference_is_an_error_naming_them(tiny_folder):
    with pytest.raises(ValueError, match="train.*test|test.*train"):
        ImageFolderDataset(tiny_folder)


def test_items_and_undecodable_images(tiny_folder):
    ds = ImageFolderDataset(tiny_folder / "test", eval_transform(8))
    x, label = ds[0]
    assert x.shape == (3, 8, 8) and label == 0
    broken = [i for i, f in enumerate(ds.files) if f.endswith("broken.jpg")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ds[broken[0]] is None
    assert ds.failed == 1


def test_dataloader_workers_read_a_zip_and_share_counts(tiny_folder, tmp_path):
    # Two forked workers reading one zip: each must open its own handle, and the failure they hit must
    # show up in the main process's counts.
    ds = ImageFolderDataset(_zip_folder(tiny_folder, tmp_path / "pets.zip") / "pets" / "test", eval_transform(8))
    collate = PairCollator()
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate, multiprocessing_context="fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(loader)
    # The last batch held only the broken image: it comes back empty, and the contract is to skip it.
    assert len(batches[-1][0]) == 0
    labels = torch.cat([labels for images, labels in batches if len(images)])
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert ds.failed == 1 and collate.dropped.value == 1


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "intel-scenes"])
def test_missing_test_set_names_the_download_command(name, tmp_path, monkeypatch):
    # No local copy, and nothing else is tried (torchvision's pickled batches are never read).
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path))
    with pytest.raises(MissingDataError, match=f"python -m miniclip data download {name}$") as err:
        open_test_set(name)
    assert err.value.looked_in == tmp_path and "\n" not in str(err.value)


# --- the Intel scenes: a tiny copy in the real layout (tests/conftest.py), with odd sizes and modes -----------

SCENES = ["buildings", "forest", "glacier", "mountain", "sea", "street"]


def _check_scenes(ds, count: int) -> None:
    """The six classes in label order, and every image decoded into the model's input (whatever its size/mode)."""
    assert ds.classes == SCENES and ds.class_names == SCENES
    assert len(ds) == count and Counter(ds.targets) == {k: count // 6 for k in range(6)}
    assert {Path(f).suffix for f in ds.files} == {".jpg", ".png"}
    for i in range(len(ds)):
        x, label = ds[i]
        assert x.shape == (3, 32, 32) and torch.isfinite(x).all() and ds.classes[label] == Path(ds.files[i]).parent.name
    assert ds.failed == 0


def test_intel_scenes_from_the_data_root_as_zip_or_folder(intel_scenes_roots, monkeypatch):
    for kind in ("zip", "folder"):
        monkeypatch.setenv("MINICLIP_DATA", str(intel_scenes_roots[kind]))
        ds = open_test_set("intel-scenes", eval_transform(32))
        _check_scenes(ds, intel_scenes_roots["count"])
        assert ds.tree.zip_path == (intel_scenes_roots["zip"] / "intel-scenes-test.zip" if kind == "zip" else None)


def test_intel_scenes_zip_is_preferred_when_both_copies_exist(intel_scenes_roots, tmp_path, monkeypatch):
    shutil.copy(intel_scenes_roots["zip"] / "intel-scenes-test.zip", tmp_path)
    shutil.copytree(intel_scenes_roots["folder"] / "intel-scenes", tmp_path / "intel-scenes")
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path))
    assert open_test_set("intel-scenes").tree.zip_path == tmp_path / "intel-scenes-test.zip"


def test_intel_scenes_path_takes_any_imagefolder_copy(intel_scenes_roots, tmp_path, monkeypatch):
    monkeypatch.setenv("MINICLIP_DATA", str(tmp_path))  # empty: only the given path may be read
    # Kaggle's archive nests the split as seg_test/seg_test/<class>/*.jpg
    kaggle = tmp_path / "seg_test" / "seg_test"
    shutil.copytree(intel_scenes_roots["folder"] / "intel-scenes" / "test", kaggle)
    archive = intel_scenes_roots["zip"] / "intel-scenes-test.zip"
    for path in (kaggle, archive, archive / "intel-scenes" / "test"):
        _check_scenes(open_test_set(f"intel-scenes:{path}", eval_transform(32)), intel_scenes_roots["count"])


def test_open_test_set_specs(tiny_folder, tmp_path, monkeypatch):
    assert len(open_test_set(f"imagefolder:{tiny_folder / 'test'}")) == 7
    with pytest.raises(ValueError):
        open_test_set("mnist")
    empty = tmp_path / "empty-root"
    empty.mkdir()
    monkeypatch.setenv("MINICLIP_DATA", str(empty))
    with pytest.raises(MissingDataError, match="python -m miniclip data download cifar10"):
        open_test_set("cifar10")
    # The folder `data download cifar10` writes is found under the data root.
    shutil.copytree(tiny_folder / "test", empty / "cifar10" / "test")
    assert open_test_set("cifar10").classes == CLASSES


# --- the shared real copies ----------------------------------------------------------------------------

REAL_CIFAR = data_root() / "cifar10-test.zip"
REAL_INTEL_SCENES = data_root() / "intel-scenes-test.zip"


@pytest.mark.data
@pytest.mark.skipif(not REAL_CIFAR.exists(), reason=f"real CIFAR-10 test zip not at {REAL_CIFAR} (set MINICLIP_DATA)")
def test_real_cifar10_test_zip():
    ds = open_test_set("cifar10", transform=eval_transform(32))
    assert isinstance(ds.tree, FileTree) and ds.tree.zip_path == REAL_CIFAR
    assert ds.classes == list(CIFAR10_CLASSES) and ds.class_names == list(CIFAR10_CLASSES)
    assert len(ds) == 10_000 and Counter(ds.targets) == {k: 1000 for k in range(10)}
    x, label = ds[6_500]  # sorted classes: index 6 is frog
    assert x.shape == (3, 32, 32) and ds.classes[label] == "frog"


@pytest.mark.data
@pytest.mark.skipif(not REAL_INTEL_SCENES.exists(),
                    reason=f"real Intel scenes test zip not at {REAL_INTEL_SCENES} (set MINICLIP_DATA)")
def test_real_intel_scenes_test_zip():
    ds = open_test_set("intel-scenes", transform=eval_transform(32))
    assert isinstance(ds.tree, FileTree) and ds.tree.zip_path == REAL_INTEL_SCENES
    assert ds.classes == SCENES and len(ds) == 2_158
    assert Counter(ds.targets) == {0: 344, 1: 317, 2: 384, 3: 324, 4: 385, 5: 404}
    shorter = ds.files.index("intel-scenes/test/glacier/21657.jpg")  # 150x76 in this copy
    x, label = ds[shorter]
    assert x.shape == (3, 32, 32) and ds.classes[label] == Path(ds.files[shorter]).parent.name
