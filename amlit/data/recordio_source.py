"""insightface ``faces_webface_112x112`` (``train.rec``/``train.idx``/``property``) as a training-image source.

``RecordIO`` indexes the file from record headers only (class of each image, no JPEG decoding), maps classes to
identity strings, and serves the images as uint8 RGB, cropped from insightface's 112x112 template to SphereFace's
112x96 by dropping 8 columns on each side (the insightface template is the SphereFace one shifted by 8 px in x).
Also the ``amlit data rec-info`` and ``amlit data rec-export`` tools.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from amlit.compat import rank_zero_warn
from amlit.data.images import (
    INSIGHTFACE_SIZE,
    BadDataPolicy,
    can_serve,
    decode_face,
    decode_image,
    image_format,
)
from amlit.data.overlap import read_id_list
from amlit.data.recordio import (
    RecIndex,
    RecProperty,
    index_rec,
    property_problems,
    read_property,
    read_record,
    rec_paths,
    unpack_payload,
)
from amlit.data.sources import TrainingImages
from amlit.errors import BadDataError, ConfigError, MissingDataError, listed
from amlit.listfiles import read_entries
from amlit.outputs import check_names_inside, check_output
from amlit.progress import progress_bar

SUFFIXES = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "bmp": ".bmp", "pnm": ".ppm", "tiff": ".tif", "webp": ".webp"}


def _read_lst(path: Path) -> pd.DataFrame:
    """(path, cls) of each line of a ``.lst``: insightface's ``<aligned>\\t<path>\\t<class>[\\t...]`` (face2rec2) or
    mxnet im2rec's ``<index>\\t<label>[\\t<label>...]\\t<path>`` (labels written as floats, ``3.000000``; the first
    is the class, as in the .rec). The columns that hold numbers tell which."""
    expected = (
        "expected insightface's '<aligned>\\t<image path>\\t<class>' or mxnet im2rec's '<index>\\t<class>\\t<image "
        "path>' per line"
    )
    try:
        table = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise BadDataError(f"{path}: {expected} ({type(error).__name__}: {error})") from None
    if table.shape[1] >= 3:
        numbers = table.apply(pd.to_numeric, errors="coerce")
        for path_column, class_column in ((1, 2), (table.shape[1] - 1, 1)):  # insightface first: its class is an int
            classes = numbers[class_column]
            if numbers[path_column].isna().all() and classes.notna().all() and (classes % 1 == 0).all():
                return pd.DataFrame({"path": table[path_column], "cls": classes.astype("int64")})
    raise BadDataError(f"{path}: {expected}, with the image's folder naming its identity; got {table.iloc[0].tolist()}")


def read_class_identities(path: str | Path, num_classes: int) -> list[str]:
    """Identity string of each class index, from ``path``:

    - a text file with one 7-digit CASIA id per line, line ``c`` (``#`` comments and blank lines skipped) naming
      class ``c``; or
    - insightface's ``train.lst`` (``.lst``: ``<aligned>\\t<path>\\t<class>`` per image) or mxnet im2rec's
      (``<index>\\t<class>\\t<path>``), where the folder holding each image names its class (e.g.
      ``.../0000045/001.jpg`` -> ``0000045``).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            f"class identity list {path} does not exist: expected one CASIA id per class index, or the train.lst "
            "the .rec was built from"
        )
    if path.suffix == ".lst":
        table = _read_lst(path)
        table["identity"] = table["path"].map(lambda p: Path(p.replace("\\", "/")).parent.name)
        pairs = table[["cls", "identity"]].drop_duplicates()
        clashes = pairs[pairs["cls"].duplicated(keep=False) | pairs["identity"].duplicated(keep=False)]
        if len(clashes):
            raise BadDataError(
                f"{path}: classes and image folders do not match one to one, e.g. "
                + ", ".join(f"class {r.cls} <- {r.identity}" for r in clashes.head(4).itertuples())
            )
        mapping = pairs.set_index("cls")["identity"]
        identities = [mapping.get(c) for c in range(num_classes)]
        if len(mapping) != num_classes or None in identities:
            raise BadDataError(f"{path} names {len(mapping)} classes, but the .rec has classes 0..{num_classes - 1}")
        return identities
    identities = read_id_list(path)  # distinct ids: one listed again is dropped (with a warning)
    lines = pd.Series([entry for _, entry in read_entries(path, str(path))])
    repeated = lines[lines.duplicated()].unique().tolist()
    if len(identities) != num_classes or repeated:
        counted = (
            f"{len(identities)} distinct identities ({len(lines)} lines, {len(repeated)} repeated: {listed(repeated)})"
            if repeated
            else f"{len(identities)} identities"
        )
        raise BadDataError(
            f"{path} lists {counted} but the .rec has {num_classes} classes: the list must have one CASIA id per "
            "class index, in class order, each id once"
        )
    return identities


class RecordImages(Dataset):
    """``(uint8 image (H, W, 3), int64 target)`` for records of a ``.rec`` given their byte offsets.

    The file is opened lazily in each process (an open handle must not be shared by forked DataLoader workers).
    ``on_bad="skip"`` replaces an undecodable or wrongly sized image by the next record and warns naming its key.
    """

    def __init__(
        self,
        rec_path: Path,
        keys: Sequence[int],
        offsets: Sequence[int],
        targets: Sequence[int],
        size: tuple[int, int],
        on_bad: BadDataPolicy = "fail",
    ) -> None:
        if not len(keys) == len(offsets) == len(targets):
            raise ValueError(f"{len(keys)} keys, {len(offsets)} offsets and {len(targets)} targets")
        self.rec_path = Path(rec_path)
        self.keys = np.asarray(keys, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.size = (int(size[0]), int(size[1]))
        self.on_bad = on_bad
        self._file = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None}

    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            self._file = open(self.rec_path, "rb")  # noqa: SIM115 (kept open for the worker's lifetime)
            self._pid = os.getpid()
        return self._file

    def _encoded(self, index: int) -> tuple[bytes, str]:
        where = f"{self.rec_path} key {self.keys[index]}"
        return unpack_payload(read_record(self._handle(), int(self.offsets[index])), where)[4], where

    def read(self, index: int) -> np.ndarray:
        encoded, where = self._encoded(index)
        return decode_face(encoded, self.size, where)

    def stored_size_of(self, index: int) -> tuple[int, int]:
        """(H, W) of record ``index``'s image as stored (``read`` serves 112x112 faces cut to 112x96)."""
        encoded, where = self._encoded(index)
        try:
            return decode_image(bytes(encoded)).shape[:2]
        except BadDataError as error:
            raise BadDataError(f"{where}: {error} ({len(encoded)} bytes): the stored image is damaged") from None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for attempt in range(len(self.keys)):
            current = (index + attempt) % len(self.keys)
            try:
                image = self.read(current)
            except BadDataError as error:
                if self.on_bad == "fail":
                    raise
                rank_zero_warn(f"skipping an unreadable training image: {error}")
                continue
            return torch.from_numpy(np.ascontiguousarray(image)), int(self.targets[current])
        raise BadDataError(f"no record of {self.rec_path} could be decoded")


class RecordIO(TrainingImages):
    """insightface RecordIO training data (e.g. ``faces_webface_112x112``), read without mxnet.

    Args:
        path: the folder holding ``train.rec``, ``train.idx`` and ``property``, or the ``.rec`` file (its ``.idx``
            beside it).
        on_bad: damaged records (found from headers when indexing, or images that fail to decode or have the wrong
            size during training): ``"skip"`` them with a warning naming each, or ``"fail"`` at once.
        identity_list: identity of each class: a file with one 7-digit CASIA id per line in class order, or the
            ``train.lst`` the .rec was built from. Without it, identities are the class numbers written as 7-digit
            strings (class 45 -> ``0000045``), so exclusion lists must then hold class numbers, not CASIA ids.
    """

    def __init__(
        self, path: str | Path, on_bad: BadDataPolicy = "skip", identity_list: str | Path | None = None
    ) -> None:
        self.rec_path, self.idx_path, self.property_path = rec_paths(path)
        self.on_bad = on_bad
        if identity_list == "None":
            # jsonargparse (4.53) hands `--data.train.identity_list=null` (a setting of a class nested in the data
            # module's) over as the string "None"; it means no list, not a file named None.
            identity_list = None
        self.identity_list = Path(identity_list) if identity_list is not None else None
        self._index: RecIndex | None = None
        self._identity_records_read = False

    def describe(self) -> str:
        return str(self.rec_path)

    @property
    def identities_are_ids(self) -> bool:
        return self.identity_list is not None

    def alignment_template(self) -> str | None:
        # insightface's packed 112x112 sets (faces_webface_112x112, ms1m, ...) all use its template; other sizes: ?
        return "insightface_112x112" if self.stored_size() == INSIGHTFACE_SIZE else None

    def required_paths(self) -> list[tuple[Path, str, str]]:
        paths = [
            (self.rec_path, "path", "insightface train.rec (or the folder holding it)"),
            (self.idx_path, "path", "the .idx beside the .rec"),
        ]
        if self.identity_list is not None:
            paths.append((self.identity_list, "identity_list", "one CASIA id per class, or train.lst"))
        return paths

    def index(self, read_identity_records: bool = False) -> RecIndex:
        """The header index (built once; ``read_identity_records`` also reads and checks every identity record)."""
        if self._index is None or (read_identity_records and not self._identity_records_read):
            self._index = index_rec(self.rec_path, self.idx_path, read_identity_records=read_identity_records)
            self._identity_records_read = read_identity_records
        return self._index

    def stored_size(self) -> tuple[int, int]:
        """(H, W) of the stored faces: the first decodable record's, which the ``property`` file must agree with.

        The images decide, not the property: served by the property's size, 112x112 faces under a property saying
        112x96 were silently cut to 96 columns (and recorded with no alignment template)."""
        first = self._first_image_size()
        if not self.property_path.is_file():
            if first is None:
                raise BadDataError(f"{self.rec_path}: none of the first 100 image records decodes; the file is damaged")
            return first[1]
        prop = read_property(self.property_path)
        if first is not None and first[1] != (prop.height, prop.width):
            key, (height, width) = first
            raise BadDataError(
                f"{self.property_path} says the faces are {prop.height}x{prop.width} (HxW) but the images of "
                f"{self.rec_path} are {height}x{width} (key {key}, the first image): the images are what is "
                f"served, so correct the property's first line to {prop.num_classes},{height},{width} "
                "(classes,height,width) or delete the property file"
            )
        return prop.height, prop.width

    def _first_image_size(self) -> tuple[int, tuple[int, int]] | None:
        """(key, (H, W)) of the first of the first 100 image records that decodes, or None if none does."""
        images = self.index().images
        with open(self.rec_path, "rb") as file:
            for key, offset in zip(images["key"][:100], images["offset"][:100], strict=True):
                try:
                    encoded = unpack_payload(read_record(file, int(offset)), f"{self.rec_path} key {key}")[4]
                    height, width = decode_image(bytes(encoded)).shape[:2]
                    return int(key), (height, width)
                except BadDataError:
                    continue
        return None

    def usable_records(self) -> tuple[pd.DataFrame, list[str], RecProperty | None]:
        """(image records (key, cls, offset), problems, property): the index's usable records, without those whose
        class is out of the property's range; problems name each left-out record, and lost identity records."""
        index = self.index()
        images, problems = index.images, list(index.problems)
        prop = read_property(self.property_path) if self.property_path.is_file() else None
        if prop is not None:
            out_of_range = images["cls"] >= prop.num_classes
            problems += [
                f"{self.rec_path} key {key} (byte {offset}): label {cls} is out of range: {self.property_path} says "
                f"{prop.num_classes} classes (0..{prop.num_classes - 1})"
                for key, cls, offset in images.loc[out_of_range, ["key", "cls", "offset"]].itertuples(index=False)
            ]
            images = images[~out_of_range].reset_index(drop=True)
        return images, problems, prop

    def property_mismatch(self, prop: RecProperty) -> str | None:
        """Why ``prop`` disagrees with the records, or None. Its class count is compared with every usable record's
        label, those beyond it included: leaving them out first (as ``usable_records`` does) would make a property
        that understates the classes look consistent, and whole classes would silently not be trained."""
        index = self.index()
        mismatch = property_problems(prop, index.num_classes, index.num_image_records, index.rec_path)
        if not mismatch:
            return None
        beyond = index.images[index.images["cls"] >= prop.num_classes]
        if len(beyond):
            mismatch.append(
                f"{len(beyond)} image record(s) are labelled {prop.num_classes} or more (e.g. "
                + ", ".join(f"key {r.key} label {r.cls}" for r in beyond.head(3).itertuples())
                + ")"
            )
        return (
            "; ".join(mismatch) + ". The property and the .rec come from different downloads or builds: if the "
            "records are right, correct the property's first line (classes,height,width) or delete the property "
            "file; if the property is right, the .rec is damaged: re-download or rebuild it"
        )

    def truncation(self) -> str | None:
        """Why the ``.rec`` looks truncated (image records the ``.idx`` lists lie beyond its end or the last is cut
        short), or None. Not a damaged record to skip: the images at the end, often whole classes, are missing."""
        index = self.index()
        if not index.images_past_end:
            return None
        return (
            f"{self.rec_path} looks truncated: {index.images_past_end:,} of the {index.num_image_records:,} image "
            f"records that {self.idx_path.name} lists start beyond its end ({self.rec_path.stat().st_size:,} bytes) "
            "or are cut short by it, so the images at its end, often whole classes, are missing. Re-download or "
            "rebuild the .rec (or use the .idx written with it); `amlit data rec-info` lists the records lost"
        )

    def image_table(self, image_size: tuple[int, int]) -> pd.DataFrame:
        images, problems, prop = self.usable_records()
        truncated = self.truncation()
        if truncated is not None:  # whatever on_bad says: skipping would train on fewer classes without a word
            raise BadDataError(f"{truncated}. amlit does not train on a truncated .rec")
        if prop is not None and (mismatch := self.property_mismatch(prop)):
            raise BadDataError(mismatch)
        if problems and self.on_bad == "fail":
            raise BadDataError(
                f"{len(problems)} damaged record(s): {listed(problems, 3)}. Fix the files or set data.train.on_bad=skip"
            )
        if problems:
            rank_zero_warn(f"{self.rec_path}: skipping {len(problems)} record(s):\n  " + "\n  ".join(problems[:10]))
        if images.empty:
            raise BadDataError(f"{self.rec_path} has no usable image records")
        stored = self.stored_size()
        if not can_serve(stored, image_size):
            raise BadDataError(
                f"{self.rec_path} holds {stored[0]}x{stored[1]} (HxW) faces but data.image_size is "
                f"{image_size[0]}x{image_size[1]}: set data.image_size=[{stored[0]},{stored[1]}]"
                + (
                    " (or [112,96]: insightface's 112x112 crops are cut by 8 px per side)"
                    * (stored == INSIGHTFACE_SIZE)
                )
            )
        num_classes = prop.num_classes if prop is not None else int(images["cls"].max()) + 1
        classes = images["cls"].to_numpy()
        if self.identity_list is not None:
            names = np.asarray(read_class_identities(self.identity_list, num_classes), dtype=object)
        else:
            rank_zero_warn(
                f"{self.rec_path}: no data.train.identity_list, so identities are class numbers (class 45 -> "
                "'0000045'), NOT CASIA ids; exclusion lists (casia_remove_59_ids.txt) need data.train.identity_list"
            )
            names = np.asarray([f"{c:07d}" for c in range(num_classes)], dtype=object)
        return pd.DataFrame({"identity": names[classes], "name": images["key"].astype(str).to_numpy()})

    def dataset(self, names: Sequence[str], targets: Sequence[int], image_size: tuple[int, int]) -> Dataset:
        size = (int(image_size[0]), int(image_size[1]))
        offsets = self.index().offsets
        keys = pd.Series(list(names), dtype=str).astype(np.int64).to_numpy()
        unknown = keys[~np.isin(keys, offsets.index.to_numpy())]
        if len(unknown):
            raise BadDataError(f"{self.idx_path} has no key {unknown[0]} ({len(unknown)} unknown keys)")
        return RecordImages(self.rec_path, keys, offsets.loc[keys].to_numpy(), targets, size, self.on_bad)


# ---- tools --------------------------------------------------------------------------------------------------------
def rec_info(path: Path, identity_list: Path | None = None, check_images: int = 200, seed: int = 0) -> dict:
    """Print what an insightface ``.rec`` holds and every problem found, then exit non-zero if there is any (check
    a download before training).

    The same reader and size rule as training (``RecordIO``): records are indexed from their headers, classes out
    of the property's range are named, lost identity records are reported, and the decoded images must all have
    the stored size (the property's H x W, else the first image's).

    Args:
        path: folder with ``train.rec``/``train.idx``/``property``, or the ``.rec`` file.
        identity_list: optional class -> identity list (one CASIA id per class line, or ``train.lst``) to check.
        check_images: decode this many randomly chosen images (0: none, -1: all).
        seed: seed of that choice.

    Returns:
        The summary that was printed, as a dict (when no problem was found).
    """
    source = RecordIO(path, on_bad="skip", identity_list=identity_list)
    rec, idx, prop_path = source.rec_path, source.idx_path, source.property_path
    index = source.index(read_identity_records=True)
    images, problems, prop = source.usable_records()
    truncated = source.truncation()
    problems = [truncated, *problems] if truncated is not None else problems
    summary: dict = {"rec": str(rec), "rec_bytes": rec.stat().st_size, "idx_records": len(index.offsets)}
    print(f"{rec}: {summary['rec_bytes']:,} bytes; {idx}: {len(index.offsets):,} records")
    if prop is not None:
        summary["property"] = {k: v for k, v in vars(prop).items() if k != "path"}
        print(f"{prop_path}: {prop.num_classes} classes, {prop.height}x{prop.width}, images: {prop.num_images}")
        # Every record's label, those beyond the property's count included (as training checks it).
        problems += property_problems(prop, index.num_classes, index.num_image_records, rec)
    else:
        print(f"{prop_path}: absent (optional)")
    if index.ranges is not None:
        first_identity, end = index.ranges
        print(f"record 0: images are keys 1..{first_identity - 1}, identity records {first_identity}..{end - 1}")
        # Keys beyond record 0's ranges are never read by training; one that points past the end of the .rec says
        # this .idx was written for another (longer) .rec, which the range checks above cannot see.
        stray = index.offsets[index.offsets.index >= end]
        if len(stray):
            print(f"{idx}: {len(stray)} key(s) beyond record 0's ranges (e.g. {stray.index[:3].tolist()}), not read")
            past = stray[stray.to_numpy() + 8 > summary["rec_bytes"]]
            if len(past):
                problems.append(
                    f"{idx}: {len(past)} key(s) beyond record 0's ranges point past the end of {rec.name} "
                    f"({summary['rec_bytes']:,} bytes; e.g. key {past.index[0]} at byte {past.iloc[0]:,}): this "
                    ".idx belongs to another .rec or the .rec is truncated; re-download both from one source"
                )
    else:
        print("no record 0 range header: every .idx key is an image record")
    num_classes = prop.num_classes if prop is not None else int(images["cls"].max()) + 1 if len(images) else 0
    counts = images.groupby("cls").size().reindex(range(num_classes), fill_value=0)
    summary.update(
        ranges=index.ranges,
        image_records=index.num_image_records,
        usable_images=len(images),
        classes=num_classes,
        identity_records=len(index.identity_ranges),
    )
    if len(counts):
        summary["images_per_class"] = {
            "min": int(counts.min()),
            "q1": float(counts.quantile(0.25)),
            "median": float(counts.median()),
            "mean": float(counts.mean()),
            "q3": float(counts.quantile(0.75)),
            "max": int(counts.max()),
        }
    empty = counts.index[counts.to_numpy() == 0].tolist()
    if empty:
        problems.append(f"{len(empty)} class numbers have no images, e.g. {empty[:5]}")
    print(
        f"{index.num_image_records:,} image records ({len(images):,} usable), {num_classes:,} classes, "
        f"{len(index.identity_ranges):,} identity records"
    )
    if "images_per_class" in summary:
        ipc = summary["images_per_class"]
        print(
            f"images per class: min {ipc['min']}, quartiles {ipc['q1']:g}/{ipc['median']:g}/{ipc['q3']:g}, "
            f"mean {ipc['mean']:.1f}, max {ipc['max']}"
        )
    if identity_list is not None:
        try:
            identities = read_class_identities(identity_list, num_classes)
            print(f"{identity_list}: {len(identities)} identities, class 0 = {identities[0]}")
        except (BadDataError, MissingDataError) as error:
            problems.append(str(error))
    stored = None
    if len(images):
        try:
            stored = source.stored_size()  # also checks the property's size against the images
        except BadDataError as error:
            problems.append(str(error))
    if check_images and stored is not None:
        chosen = images if check_images < 0 else images.sample(min(check_images, len(images)), random_state=seed)
        dataset = RecordImages(rec, chosen["key"], chosen["offset"], chosen["cls"], stored, on_bad="fail")
        bad = 0
        for i in progress_bar(range(len(dataset)), desc="decoding images", unit="img", leave=False):
            try:
                size = dataset.stored_size_of(i)  # exactly: training would cut a 112x112 face to a 112x96 set
            except BadDataError as error:
                bad += 1
                problems.append(str(error))
                continue
            if size != stored:
                bad += 1
                problems.append(
                    f"{rec} key {dataset.keys[i]}: image is {size[0]}x{size[1]} (HxW), not {stored[0]}x{stored[1]} "
                    "like the set's faces"
                )
        summary.update(stored_size=list(stored), checked_images=len(dataset))
        print(f"decoded {len(dataset)} images: {len(dataset) - bad} are {stored[0]}x{stored[1]} faces, {bad} failed")
    summary["problems"] = problems
    print(f"{len(problems)} problem(s)" + "".join(f"\n  {p}" for p in problems[:50]))
    if len(problems) > 50:
        print(f"  ... and {len(problems) - 50} more")
    if problems:
        raise BadDataError(f"{rec}: {len(problems)} problem(s), listed above; fix or re-download the files")
    return summary


def rec_export(
    path: Path,
    output: Path,
    crop: bool = False,
    identity_list: Path | None = None,
    on_bad: BadDataPolicy = "skip",
) -> int:
    """Write the images of an insightface ``.rec`` as an aligned tree ``<output>/<identity>/<key>.<ext>``.

    Exits non-zero after writing when any record was damaged and skipped (they are listed), or nothing was written.

    Args:
        path: folder with ``train.rec``/``train.idx``, or the ``.rec`` file.
        output: the tree's folder (usable as ``ImageFolder`` root).
        crop: cut insightface's 112x112 crops to 112x96 (8 px off each side) and write lossless PNG; otherwise the
            stored JPEG bytes are copied unchanged.
        identity_list: class -> identity (see ``RecordIO``); without it folders are 7-digit class numbers.
        on_bad: ``skip`` damaged records (listed, and the exit status is non-zero), or ``fail`` at the first one.

    Returns:
        The number of images written.
    """
    output = check_output(output, "--output", folder=True)
    found = sorted(entry.name for entry in output.iterdir()) if output.is_dir() else []
    if found:
        # an earlier export beside this one: identities under class numbers and under --identity_list names (one
        # person, two classes), or each image as .jpg and as a --crop .png
        raise ConfigError(
            f"--output={output} is not empty (it holds {listed(found)}): an export into it would mix with what is "
            "there, and a tree trained from it could hold a person twice; give a new or empty folder, or delete "
            f"{output} first"
        )
    source = RecordIO(path, on_bad=on_bad, identity_list=identity_list)
    stored = source.stored_size()
    if crop and stored != INSIGHTFACE_SIZE:
        raise ConfigError(
            f"--crop cuts insightface's 112x112 crops to 112x96, but {source.rec_path} holds {stored[0]}x{stored[1]} "
            "faces: export without --crop"
        )
    size = (112, 96) if crop else stored
    table = source.image_table(size)
    # Folder names come from the identity list (a train.lst's image folders): none may lead out of the output.
    check_names_inside(table["identity"].unique(), output, identity_list or source.rec_path, "identity folder")
    _, skipped, _ = source.usable_records()
    index = source.index()
    written = 0
    with open(source.rec_path, "rb") as file:
        rows = zip(table["identity"], table["name"], index.offsets.loc[table["name"].astype(np.int64)], strict=True)
        for identity, key, offset in progress_bar(rows, total=len(table), desc="exporting", unit="img"):
            where = f"{source.rec_path} key {key}"
            try:
                encoded = unpack_payload(read_record(file, int(offset)), where)[4]
                image = decode_face(encoded, size, where)  # checks every image before it is written
                if crop:
                    _, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                    encoded, suffix = png.tobytes(), ".png"
                else:
                    suffix = SUFFIXES[image_format(encoded[:32])]  # the stored bytes, unchanged
            except BadDataError as error:
                if on_bad == "fail":
                    raise
                skipped.append(str(error))
                continue
            folder = output / identity
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{key}{suffix}").write_bytes(encoded)
            written += 1
    print(f"wrote {written} images of {table['identity'].nunique()} identities to {output}")
    if skipped or not written:
        raise BadDataError(
            f"{source.rec_path}: {len(skipped)} damaged record(s) not exported"
            + "".join(f"\n  {problem}" for problem in skipped[:20])
            + (f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else "")
            + ("\nnothing was written" if not written else f"\nthe other {written} images were written")
        )
    return written
