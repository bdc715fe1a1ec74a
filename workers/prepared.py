"""The prepared-images store: a split's images decoded and resized once, read by every later model.

Models whose preprocessing up to the resize is the same (the resize target, `decode_size(config,
jitter)`; the resize mode; the interpolation; the JPEG decoder and its draft rule) see the same
resized uint8 images: only the crop and the normalisation differ. The store keeps those images, as
FFCV's and DALI's readers do: ONE flat file of uint8 RGB pixels (`<key>.<token>.u8`, each image
H x W x 3, of its own size: shorter side = the target, or both sides for "squash") and an index
(`<key>.index.npz`: offsets, heights, widths, ids, per-image fingerprints, the settings). Reading is
`np.memmap` and a view per image; the crop (the centre `input_size` square, or the ten jitter views
as `extract.preprocess` makes them) is cut at batch time by a background thread, the normalisation
happens on the device. A crop of a uint8 image is exact, so features from the store are the PIL
pipeline's, bit for bit, with the same JPEG decoder: the feature cache key does not change.

Key: dataset + split + the settings above + `STORE_VERSION` + `EXTRACTOR_VERSION` + the image ids
(in order), as the feature cache's. Checked on every open against each image's fingerprint:
  files:  size and mtime_ns (one stat per image, no read: the quick check of rsync and of
          Python's bytecode cache). Hashing the contents would read every file on every evaluation,
          which is much of what the store saves; a file rewritten with the same size and its mtime
          set back is not noticed (delete the store then).
  pixels: SHA-256 of the in-memory array (with its shape and dtype): cheap, they are small demo sets.
  boxes:  part of the fingerprint (a query cropped differently is another image).
A fingerprint that differs, a damaged or inconsistent index, or a data file of the wrong size: the
store is rebuilt, never trusted. Writes are atomic: the data file and the index are written under
temporary names, fsynced and renamed (the index last, naming its data file), so a half-built store
is never read; builders of one key take turns (a lock file), so two jobs decode it once.

The first use builds the store while its model runs: DataLoader workers decode and resize, the
main process appends each image to the data file and crops its views for the model, so the first
evaluation costs what one without the store does, and every later one skips decoding.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workers.contract import EngineError, Progress, ProgressCallback
from workers.datasets.base import ImageRecord
from workers.extract import (
    _INTERPOLATION,
    _JITTER_CROPS,
    EXTRACTOR_VERSION,
    _crop_origin,
    _resize,
    _worker_init,
    cache_key,
    decode_size,
    load_image,
    resolve_jpeg_decoder,
)
from workers.models import DataConfig

STORE_VERSION = "1"   # bump when the layout or what is stored changes: part of every store key
PREFETCH_BATCHES = 3
FREE_SPACE_SPARE_BYTES = 2 * 2**30   # a store is built only where it leaves this much of the disk free
DRAFT_RULE = "JPEGs DCT-scaled by 1/2, 1/4 or 1/8 while both sides stay >= the resize (PIL's draft); none with a box"


@dataclass(frozen=True)
class Resize:
    """The preprocessing up to the resize: what a store's images are."""

    size: int                 # the shorter side (both sides, "squash")
    mode: str = "shorter"     # shorter | squash
    interpolation: str = "bilinear"

    @classmethod
    def of(cls, config: DataConfig, jitter: bool) -> Resize:
        return cls(decode_size(config, jitter), config.resize_mode, config.interpolation)


def store_settings(resize: Resize, jpeg_decoder: str) -> dict:
    return {"store_version": STORE_VERSION, "extractor_version": EXTRACTOR_VERSION, "resize": resize.size,
            "resize_mode": resize.mode, "interpolation": resize.interpolation, "jpeg_decoder": jpeg_decoder,
            "draft": DRAFT_RULE}


def fingerprint(record: ImageRecord) -> str:
    """What says an image is unchanged: size + mtime_ns of a file, SHA-256 of pixels; and the box."""
    box = "" if record.box is None else ",".join(repr(float(v)) for v in record.box)
    if record.pixels is not None:
        pixels = np.ascontiguousarray(record.pixels)
        digest = hashlib.sha256(pixels.data).hexdigest()
        return f"pixels:{pixels.dtype.str}:{'x'.join(map(str, pixels.shape))}:{digest}|box:{box}"
    if record.path is None:
        raise EngineError(f"image {record.id} has neither a path nor pixels")
    try:
        stat = os.stat(record.path)
    except OSError:
        return f"file:{record.path}:missing|box:{box}"   # never matches a stored one: the rebuild says why
    # not the path: machines that mount one dataset at different paths share its stores (the ids are in the key)
    return f"file:{stat.st_size}:{stat.st_mtime_ns}|box:{box}"


class PreparedImages:
    """An opened store: `image(i)` is a read-only (H, W, 3) uint8 view into the memory-mapped file."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray, shapes: np.ndarray, ids: list[str], key: str):
        self.data, self.offsets, self.shapes, self.ids, self.key = data, offsets, shapes, ids, key

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, index: int) -> np.ndarray:
        height, width = self.shapes[index]
        return self.data[self.offsets[index]:self.offsets[index + 1]].reshape(height, width, 3)


def crop_views(images: Sequence[np.ndarray], size: int, jitter: bool, centre: str = "round") -> torch.Tensor:
    """(n, V, 3, S, S) uint8 views of resized (H, W, 3) images, as `extract.preprocess` cuts them.

    The tensor is a permuted view of (n, V, S, S, 3) memory: what `.contiguous(channels_last)` wants."""
    wheres = _JITTER_CROPS if jitter else ("cc",)
    out = np.empty((len(images), len(wheres) * (2 if jitter else 1), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        height, width = image.shape[:2]
        for j, where in enumerate(wheres):
            x, y = _crop_origin(width, height, size, where, centre)
            out[i, j] = image[y:y + size, x:x + size]
            if jitter:
                out[i, j + len(wheres)] = out[i, j, :, ::-1]
    return torch.from_numpy(out).permute(0, 1, 4, 2, 3)


class _ResizedImages(torch.utils.data.Dataset):
    """Runs in DataLoader workers while a store is built: each record decoded and resized, (H, W, 3) uint8."""

    def __init__(self, records: Sequence[ImageRecord], resize: Resize, decoder: str):
        self.records, self.resize, self.decoder = list(records), resize, decoder
        self.interpolation = _INTERPOLATION[resize.interpolation]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = load_image(self.records[index], draft_size=self.resize.size, decoder=self.decoder)
        resized = _resize(image, self.resize.size, self.interpolation, self.resize.mode)
        return torch.from_numpy(np.array(resized, dtype=np.uint8))   # a tensor travels in shared memory


def _as_list(batch: list) -> list:
    return batch


_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterator, depth: int = PREFETCH_BATCHES) -> Iterator:
    """`items`, produced by a background thread up to `depth` ahead (numpy and torch release the GIL)."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:   # handed to the consumer, raised there
            put(_Failed(exc))

    thread = threading.Thread(target=produce, name="prepared-images", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class _Writer:
    """Appends images to a temporary data file; `commit` makes it the store of `key`, atomically."""

    def __init__(self, root: Path, key: str, settings: dict, ids: list[str], fingerprints: list[str]):
        self.root, self.key, self.settings, self.ids, self.fingerprints = root, key, settings, ids, fingerprints
        self.token = uuid.uuid4().hex[:12]
        self.tmp = root / f".{key}.{self.token}.u8.tmp"
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (open across appends; closed by commit or abort)
        self.offsets = [0]
        self.shapes: list[tuple[int, int]] = []

    def append(self, image: np.ndarray) -> None:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise EngineError(f"a prepared image must be H x W x 3, got {image.shape}")
        self.file.write(image.data)
        self.offsets.append(self.offsets[-1] + image.size)
        self.shapes.append(image.shape[:2])

    def commit(self) -> str:
        """Returns the data file's name."""
        if len(self.shapes) != len(self.ids):
            raise EngineError(f"prepared {len(self.shapes)} images of {len(self.ids)}")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        data_name = f"{self.key}.{self.token}.u8"
        os.replace(self.tmp, self.root / data_name)
        index_tmp = self.root / f".{self.key}.{self.token}.index.tmp.npz"
        with open(index_tmp, "wb") as handle:
            np.savez(handle, offsets=np.asarray(self.offsets, dtype=np.int64),
                     shapes=np.asarray(self.shapes, dtype=np.int32).reshape(-1, 2),
                     ids=np.asarray(self.ids, dtype=str), fingerprints=np.asarray(self.fingerprints, dtype=str),
                     settings=np.asarray(json.dumps(self.settings, sort_keys=True)), data=np.asarray(data_name))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(index_tmp, self.root / f"{self.key}.index.npz")   # the store exists from here on
        for old in self.root.glob(f"{self.key}.*.u8"):
            if old.name != data_name:
                old.unlink(missing_ok=True)   # a reader that has it mapped keeps its pages (POSIX)
        return data_name

    def abort(self) -> None:
        self.file.close()
        for leftover in (self.tmp, self.root / f".{self.key}.{self.token}.index.tmp.npz"):
            leftover.unlink(missing_ok=True)


class StoreSource:
    """(n, V, 3, S, S) uint8 view batches of `records`, from the store (`building` False: a background
    thread crops them out of the memory map) or decoded while the store is built (`building` True)."""

    def __init__(self, store: PreparedStore, records: Sequence[ImageRecord], resize: Resize, decoder: str, *,
                 dataset: str, split: str, batch_size: int, num_workers: int,
                 transform: Callable[[list[np.ndarray]], torch.Tensor] | None,
                 progress: ProgressCallback | None = None):
        self.store, self.records, self.resize, self.decoder = store, list(records), resize, decoder
        self.dataset, self.split, self.batch_size, self.num_workers = dataset, split, batch_size, num_workers
        self.transform = transform or (lambda images: images)
        self.progress = progress
        self.settings = store_settings(resize, decoder)
        self.ids = [record.id for record in self.records]
        self.key = store.key(dataset, split, self.settings, self.ids)
        self.fingerprints = [fingerprint(record) for record in self.records]
        self.opened = store.open(self.key, self.settings, self.ids, self.fingerprints)
        self.building = self.opened is None

    def __iter__(self) -> Iterator:
        if self.opened is None:
            yield from self._build_locked()
            if self.opened is None:
                return
        self.store.reads += 1
        yield from prefetched(self._read(self.opened))

    def _build_locked(self) -> Iterator:
        """Builds the store (yielding its batches) unless another job built it while this one waited for
        the lock: then `opened` is set and nothing is yielded. A folder that cannot be written (read-only,
        not mounted) costs the store, not the evaluation: the images are decoded for this model alone."""
        lock = self.store.lock(self.key)
        try:
            lock.__enter__()
        except OSError:
            yield from self._build(keep=False)
            return
        try:
            self.opened = self.store.open(self.key, self.settings, self.ids, self.fingerprints)
            if self.opened is None:
                yield from self._build()
        finally:
            lock.__exit__(None, None, None)

    def _read(self, opened: PreparedImages) -> Iterator:
        for start in range(0, len(opened), self.batch_size):
            stop = min(start + self.batch_size, len(opened))
            yield self.transform([opened.image(i) for i in range(start, stop)])

    def _build(self, keep: bool = True) -> Iterator:
        loader = torch.utils.data.DataLoader(
            _ResizedImages(self.records, self.resize, self.decoder), batch_size=self.batch_size, shuffle=False,
            num_workers=self.num_workers, collate_fn=_as_list,
            worker_init_fn=_worker_init if self.num_workers > 0 else None,
            prefetch_factor=4 if self.num_workers > 0 else None,
        )
        # no room on the disk: the images are decoded for this model as without a store, and nothing is kept
        writer = self._writer() if keep else None
        committed = False
        done, start = 0, time.perf_counter()
        try:
            for batch in loader:
                images = [tensor.numpy() for tensor in batch]
                try:
                    for image in images if writer is not None else ():
                        writer.append(image)
                except OSError:   # the disk filled up meanwhile: give the store up, not the evaluation
                    writer.abort()
                    writer = None
                done += len(images)
                if self.progress:
                    rate = done / max(time.perf_counter() - start, 1e-9)
                    self.progress(Progress("extracting", done, len(self.records), rate,
                                           f"{self.split}: preparing images (first use)"))
                yield self.transform(images)
            if writer is not None:
                try:
                    writer.commit()
                    self.store.builds += 1
                except OSError:   # the disk filled up (or went away) at the end: the features stand
                    writer.abort()
                    writer = None
            committed = True
        finally:
            if not committed and writer is not None:
                writer.abort()

    def _writer(self) -> _Writer | None:
        """A writer for the store, or None where the disk has no room for it or the folder no write access."""
        try:
            if not self.store.has_room(len(self.records), self.resize):
                return None
            return _Writer(self.store.root, self.key, self.settings, self.ids, self.fingerprints)
        except OSError:
            return None


class PreparedStore:
    """Prepared-images stores in a folder, one per key (see the module's docstring)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.builds = 0   # stores built by this instance
        self.reads = 0    # stores read

    def has_room(self, images: int, resize: Resize) -> bool:
        """Whether the disk has room for a store of `images` images at `resize` (4:3 photos assumed) and
        FREE_SPACE_SPARE_BYTES more: a store never fills the disk the feature cache and the uploads need."""
        needed = images * resize.size * round(resize.size * 4 / 3) * 3 + FREE_SPACE_SPARE_BYTES
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free >= needed

    @staticmethod
    def key(dataset: str, split: str, settings: dict, ids: Sequence[str]) -> str:
        return cache_key(dataset, split, settings, ids)

    def index_path(self, key: str) -> Path:
        return self.root / f"{key}.index.npz"

    def open(self, key: str, settings: dict, ids: Sequence[str], fingerprints: Sequence[str]) -> PreparedImages | None:
        """The store of `key` if it is complete, consistent and of these images; None: build it."""
        path = self.index_path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as index:
                offsets = index["offsets"].astype(np.int64)
                shapes = index["shapes"].astype(np.int64)
                stored_ids = index["ids"].tolist()
                stored_prints = index["fingerprints"].tolist()
                stored_settings = json.loads(str(index["settings"]))
                data_name = str(index["data"])
            count = len(ids)
            if (stored_settings != settings or stored_ids != list(ids) or stored_prints != list(fingerprints)
                    or offsets.shape != (count + 1,) or shapes.shape != (count, 2) or offsets[0] != 0
                    or (shapes <= 0).any() or not np.array_equal(np.diff(offsets), shapes[:, 0] * shapes[:, 1] * 3)
                    or Path(data_name).name != data_name or not data_name.startswith(key)):
                return None
            data_path = self.root / data_name
            if not data_path.is_file() or data_path.stat().st_size != offsets[-1] or offsets[-1] == 0:
                return None
            data = np.memmap(data_path, dtype=np.uint8, mode="r")
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, EOFError):
            return None   # damaged (json's errors are ValueErrors): rebuilt, not trusted
        return PreparedImages(data, offsets, shapes, list(ids), key)

    @contextlib.contextmanager
    def lock(self, key: str):
        """Exclusive, across processes, while one job builds the store of `key`."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{key}.lock", "a+b") as handle:
            try:
                import fcntl
            except ImportError:   # not POSIX: no lock (two jobs would both build; the last rename wins)
                yield
                return
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def source(self, records: Sequence[ImageRecord], config: DataConfig, jitter: bool, *, dataset: str = "",
               split: str = "", jpeg_decoder: str = "auto", batch_size: int = 32, num_workers: int = 2,
               pin: bool = False, progress: ProgressCallback | None = None) -> StoreSource:
        """View batches for a model with `config`: what `extract._run` takes as `batches`."""
        size, centre = config.input_size, config.centre_crop

        def views(images: list[np.ndarray]) -> torch.Tensor:
            batch = crop_views(images, size, jitter, centre)
            return batch.pin_memory() if pin else batch

        return StoreSource(self, records, Resize.of(config, jitter), resolve_jpeg_decoder(jpeg_decoder),
                           dataset=dataset, split=split, batch_size=batch_size, num_workers=num_workers,
                           transform=views, progress=progress)

    def prepare(self, records: Sequence[ImageRecord], resize: Resize, *, dataset: str, split: str,
                jpeg_decoder: str = "auto", batch_size: int = 32, num_workers: int = 2,
                progress: ProgressCallback | None = None) -> bool:
        """Build the store of `records` at `resize` ahead of any model; False if it was there already."""
        if not records:
            return False
        source = StoreSource(self, records, resize, resolve_jpeg_decoder(jpeg_decoder), dataset=dataset, split=split,
                             batch_size=batch_size, num_workers=num_workers, transform=None, progress=progress)
        if not source.building:
            return False
        builds = self.builds
        for _ in source._build_locked():
            pass
        return self.builds > builds
