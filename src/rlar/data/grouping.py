"""Split groups by patient *and by content*: duplicate images never fall on two sides of a split.

Why: a database may hold the same scan under several cases (DDTI: 150_1, 233_2, 323_1, 326_1 and 349_1 are
byte-identical, and so are 353_2 and 396_1). Grouping by case alone then puts copies of one image in the training
and the test fold, and the test score measures memory. So before splitting, every image is linked to its patient
and to every image whose content matches, and the connected components (union-find over patient and content
links) are the groups the splitter keeps together.

Two content links:

* **identical**: the decoded, scan-area-cropped pixels are equal (SHA-1 of the array). Byte-identical files always
  decode to identical pixels, so this covers them, and also the same pixels re-saved in another container.
* **near**: a difference hash (dHash, Krawetz 2013) of the cropped grey image: resize to ``HASH_SIZE`` rows x
  ``HASH_SIZE + 1`` columns (PIL box filter), one bit per horizontally adjacent pair (left brighter than right),
  ``HASH_SIZE**2`` = 256 bits. Two images are near-identical when their hashes differ in at most
  ``NEAR_THRESHOLD`` bits (``DEFAULT_NEAR_THRESHOLD`` = 16 of 256, 6 %). Re-encoding, mild rescaling or a few
  changed pixels move a 256-bit dHash by a few bits; two different B-mode scans differ in about half their bits
  (on DDTI the closest pair of different scans differs in far more bits than the threshold; see docs/protocol.md).

Images that cannot be decoded are reported back (they keep their patient group and are left to the caller, who
skips them the way ``rlar data summary`` does).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from rlar.data.record import SampleInfo, Skip
from rlar.data.sources.base import Source
from rlar.errors import DataError

#: dHash side: the hash has HASH_SIZE**2 bits.
HASH_SIZE = 16
#: Maximum Hamming distance (bits out of HASH_SIZE**2) at which two images count as near-identical.
DEFAULT_NEAR_THRESHOLD = 16


@dataclass(frozen=True)
class ContentHash:
    """Exact and perceptual fingerprints of one decoded, cropped image."""

    exact: str  # SHA-1 hex digest of the float32 pixels and their shape
    dhash: np.ndarray  # (HASH_SIZE**2,) bool


@dataclass(frozen=True)
class ContentLink:
    """Two images whose content matches (``distance``: dHash bits that differ; 0 for identical pixels)."""

    a: str
    b: str
    kind: str  # "identical" | "near"
    distance: int


@dataclass(frozen=True)
class MergedGroup:
    """A split group that holds more than one patient because some of their images share content."""

    group: str
    patients: tuple[str, ...]
    images: tuple[str, ...]
    links: tuple[ContentLink, ...]


@dataclass
class Grouping:
    """``group_of[image_id]`` is the split group; ``merged`` lists the groups that joined several patients."""

    group_of: dict[str, str]
    merged: list[MergedGroup] = field(default_factory=list)
    links: list[ContentLink] = field(default_factory=list)
    unreadable: list[Skip] = field(default_factory=list)
    near_threshold: int = DEFAULT_NEAR_THRESHOLD

    def groups(self, infos: Sequence[SampleInfo]) -> list[str]:
        """The group of each info, in order (what a grouped splitter takes)."""
        return [self.group_of[info.image_id] for info in infos]


def dhash(image: np.ndarray, hash_size: int = HASH_SIZE) -> np.ndarray:
    """Difference hash of a grey image (H, W) in [0, 1]: (hash_size**2,) bool, row-major."""
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(f"dhash needs a non-empty 2-D grey image, got shape {image.shape}")
    grey = Image.fromarray(np.clip(image * 255.0, 0, 255).astype(np.uint8))
    small = np.asarray(grey.resize((hash_size + 1, hash_size), Image.Resampling.BOX), dtype=np.int16)
    return (small[:, :-1] > small[:, 1:]).reshape(-1)


def content_hash(image: np.ndarray) -> ContentHash:
    """Exact (SHA-1 of the pixels) and perceptual (dHash) fingerprint of one cropped grey image."""
    pixels = np.ascontiguousarray(image, dtype=np.float32)
    digest = hashlib.sha1(str(pixels.shape).encode() + pixels.tobytes()).hexdigest()
    return ContentHash(exact=digest, dhash=dhash(pixels))


def hash_source(source: Source, progress: bool = True) -> tuple[dict[str, ContentHash], list[Skip]]:
    """Decode every image of ``source`` once and fingerprint it; images that fail to decode are returned as skips."""
    from tqdm.auto import tqdm

    hashes: dict[str, ContentHash] = {}
    failed: list[Skip] = []
    for index in tqdm(range(len(source)), desc=f"hashing {source.name} images", disable=not progress,
                      unit="img", leave=False):
        info = source.infos[index]
        try:
            sample = source[index]
        except DataError as err:
            failed.append(Skip(info.image_id, str(err)))  # the id (what splits name) and the file's own message
            continue
        hashes[info.image_id] = content_hash(sample.image)
    return hashes, failed


class _UnionFind:
    """Disjoint sets over strings (path halving; the smaller name becomes the root, so results are stable)."""

    def __init__(self, items: Iterable[str]) -> None:
        self.parent = {item: item for item in items}

    def find(self, item: str) -> str:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def content_links(hashes: Mapping[str, ContentHash], near_threshold: int = DEFAULT_NEAR_THRESHOLD
                  ) -> list[ContentLink]:
    """Every pair of images with identical pixels or dHash distance <= ``near_threshold`` (sorted)."""
    if near_threshold < 0:
        raise ValueError(f"near_threshold must be >= 0, got {near_threshold}")
    ids = sorted(hashes)
    links: list[ContentLink] = []
    if len(ids) < 2:
        return links
    bits = np.stack([hashes[i].dhash for i in ids]).astype(np.uint8)
    # Hamming distances via matrix products on 0/1 vectors: d(a, b) = a.(1-b) + (1-a).b; n x n ints, fine for
    # thousands of images (10 000 images: 400 MB in int32, so work in row blocks).
    ones, zeros = bits.astype(np.int32), (1 - bits).astype(np.int32)
    block = 1024
    for start in range(0, len(ids), block):
        rows = slice(start, start + block)
        dist = ones[rows] @ zeros.T + zeros[rows] @ ones.T
        for r, c in zip(*np.nonzero(dist <= near_threshold), strict=True):
            i, j = start + int(r), int(c)
            if j <= i:
                continue
            a, b = ids[i], ids[j]
            identical = hashes[a].exact == hashes[b].exact
            links.append(ContentLink(a, b, "identical" if identical else "near", 0 if identical else int(dist[r, c])))
    # Identical pixels always have distance 0, so the pass above found every identical pair too.
    return links


def group_images(infos: Sequence[SampleInfo], hashes: Mapping[str, ContentHash] | None = None,
                 near_threshold: int = DEFAULT_NEAR_THRESHOLD) -> Grouping:
    """Union-find over patient links (images of one patient) and content links (``hashes``; None: patients only).

    Returns each image's group: ``"<patient>"`` when the group is one patient, else the patients joined by ``+``
    (sorted, e.g. ``"150+233+323+326+349"``), so a split file reader can see why images travel together.
    """
    ids = [info.image_id for info in infos]
    patient_of = {info.image_id: info.patient_id for info in infos}
    nodes = UnionNodes(ids, patient_of)
    links = [] if hashes is None else content_links({k: v for k, v in hashes.items() if k in patient_of},
                                                     near_threshold)
    for link in links:
        nodes.union(link.a, link.b)
    members: dict[str, list[str]] = defaultdict(list)
    for image_id in ids:
        members[nodes.root(image_id)].append(image_id)
    group_of: dict[str, str] = {}
    merged: list[MergedGroup] = []
    links_of: dict[str, list[ContentLink]] = defaultdict(list)
    for link in links:
        links_of[nodes.root(link.a)].append(link)
    for root, images in members.items():
        patients = tuple(sorted({patient_of[i] for i in images}))
        name = "+".join(patients)
        for image_id in images:
            group_of[image_id] = name
        if len(patients) > 1:
            merged.append(MergedGroup(name, patients, tuple(sorted(images)), tuple(links_of[root])))
    merged.sort(key=lambda g: g.group)
    return Grouping(group_of=group_of, merged=merged, links=links, near_threshold=near_threshold)


class UnionNodes:
    """Images joined to their patient node; ``root(image)`` names the component."""

    def __init__(self, image_ids: Sequence[str], patient_of: Mapping[str, str]) -> None:
        self._uf = _UnionFind([f"i:{i}" for i in image_ids] + [f"p:{p}" for p in set(patient_of.values())])
        for image_id in image_ids:
            self._uf.union(f"i:{image_id}", f"p:{patient_of[image_id]}")

    def union(self, a: str, b: str) -> None:
        self._uf.union(f"i:{a}", f"i:{b}")

    def root(self, image_id: str) -> str:
        return self._uf.find(f"i:{image_id}")


def group_source(source: Source, by_content: bool = True, near_threshold: int = DEFAULT_NEAR_THRESHOLD,
                 progress: bool = True) -> Grouping:
    """Groups of ``source.infos``: by patient, and (``by_content``) by identical / near-identical content.

    Decodes every image once when ``by_content``; those that cannot be decoded are listed in ``unreadable``.
    """
    if not by_content:
        return group_images(source.infos, None, near_threshold)
    hashes, failed = hash_source(source, progress=progress)
    grouping = group_images(source.infos, hashes, near_threshold)
    grouping.unreadable = failed
    return grouping


def drop_unreadable(source: Source, unreadable: Sequence[Skip]) -> None:
    """Remove images that failed to decode (``Skip.item`` = image id) from ``source.infos`` and record them in
    ``source.skips``, as ``Source.verify`` does: the run and ``rlar data summary`` skip them and say so."""
    bad = {skip.item for skip in unreadable}
    if not bad:
        return
    for skip in unreadable:
        source.skips.add(skip.item, skip.reason)
    source.infos = [info for info in source.infos if info.image_id not in bad]


def format_merged(grouping: Grouping, limit: int = 50) -> list[str]:
    """Human-readable lines for ``rlar data summary``: one per merged group, with its links."""
    lines = [f"groups merged by content (identical pixels, or dHash distance <= {grouping.near_threshold} of "
             f"{HASH_SIZE * HASH_SIZE} bits): {len(grouping.merged)}"]
    for group in grouping.merged[:limit]:
        identical = sorted({i for link in group.links if link.kind == "identical" for i in (link.a, link.b)})
        near = [f"{link.a}~{link.b} ({link.distance} bits)" for link in group.links if link.kind == "near"]
        parts = ([f"identical images {', '.join(identical)}"] if identical else []) + (
            [f"near-identical {', '.join(near)}"] if near else [])
        lines.append(f"  patients {', '.join(group.patients)}: {'; '.join(parts)}")
    if len(grouping.merged) > limit:
        lines.append(f"  ... ({len(grouping.merged) - limit} more)")
    return lines
