"""DDTI (Digital Database of Thyroid Images; Pedraza et al., Proc. SPIE 9287, 2015) in its native layout.

Layout of ``root``::

    {case}.xml       one per case (patient/nodule): number, age, sex, composition, echogenicity, margins,
                     calcifications, tirads, reportbacaf, reporteco, then one <mark> per image
    {case}_{k}.jpg   560x360 RGB JPEG of grey B-mode ultrasound with burned-in scanner text

``<mark><image>k</image><svg>...</svg></mark>``: the ``<svg>`` text is JSON (not SVG markup), a list of
regions ``{"points": [{"x": .., "y": ..}, ...], "regionType": "freehand"}`` in pixel coordinates. Every
region's polygon is filled (:func:`skimage.draw.polygon`) and the regions are united into one mask: a mark
with two regions is usually one nodule shown in two side-by-side panes, sometimes two nodules.

Identifiers: ``patient_id = "ddti-{case}"``, ``image_id = "{case}_{k}"``. Labels are per case, so every
image of a case shares them; splits must group by ``patient_id``.

TI-RADS is on DDTI's own 2/3/4a/4b/4c/5 scale (``scale = "ddti"``), spelled by
:func:`rlar.data.labels.canonical_level`.

Descriptor mapping (raw DDTI value -> ``rlar.data.record.DESCRIPTOR_VALUES``), done by the normaliser every
source shares (:func:`rlar.data.descriptors.normalise_descriptor`: case, spaces, hyphens and underscores do not
matter, so ``ill- defined`` = ``ill defined``):

=================  ==========================  =================================================================
DDTI field         raw value                   canonical (key: value)
=================  ==========================  =================================================================
composition        solid                       composition: solid
                   predominantly solid         composition: mixed_solid
                   predominantly cystic        composition: mixed_cystic
                   cystic                      composition: cystic
                   spongiform                  composition: spongiform
                   dense                       composition: solid -- DDTI's "dense" is a nodule made of
                                               compact tissue with no fluid part; ACR composition only asks
                                               how much of the nodule is solid vs cystic, and for a nodule
                                               without cystic parts the answer is "solid"
echogenicity       hyperechogenicity           echogenicity: hyperechoic
                   isoechogenicity             echogenicity: isoechoic
                   hypoechogenicity            echogenicity: hypoechoic
                   marked hypoechogenicity     echogenicity: very_hypoechoic
margins            well defined                margin: smooth
                   well defined smooth         margin: smooth
                   ill defined                 margin: ill_defined
                   microlobulated              margin: lobulated_irregular
                   macrolobulated              margin: lobulated_irregular
                   spiculated                  margin: lobulated_irregular
calcifications     non                         echogenic_foci: none
                   microcalcification(s)       echogenic_foci: punctate
                   macrocalcification(s)       echogenic_foci: macrocalcifications
(not recorded)     --                          shape: None (DDTI has no ACR shape descriptor)
=================  ==========================  =================================================================

An empty value means "not recorded" and becomes None. Every other decision is recorded in ``source.skips``
(so ``rlar data summary`` counts it) and nothing is coerced silently:

* an unknown raw descriptor or TI-RADS value: the images are kept, that field is None, and a Skip
  ``case N: unknown echogenicity value 'xyz'`` is recorded;
* a mark with an empty region list: the image is kept with ``mask=None`` (``has_mask=False``; it still serves
  classification) and a Skip says the mark has no region;
* a mark naming a missing image file (e.g. DDTI's 142_2): Skip;
* an XML file that does not parse: Skip naming the file (its images then also get a Skip, below);
* a malformed region (unreadable JSON, points that are not numbers, fewer than 3 points, collinear points,
  a polygon wholly outside the image; :func:`rlar.data.sources.masks.polygon_problem`): the region is
  dropped with a Skip; when no valid region remains the image is kept with ``mask=None``;
* some points outside the image: clipped to the image border, with a Skip saying so;
* a united mask below the minimum nodule size (:mod:`rlar.data.sources.masks`): the image is kept with
  ``mask=None`` and a Skip starting "mask too small";
* a second mark for the same image: ignored with a Skip (the first one is used);
* an image file with no ``<mark>`` pointing at it: Skip ``image with no annotation entry``.

Pixels are decoded lazily in ``_load``; scanning parses XML and reads only each JPEG's header (its size, to
check polygon coordinates). With ``crop=True`` (default) image and mask are cropped to the ultrasound scan
area (:mod:`rlar.data.crop`) so burned-in text -- including some readers' notes such as "TIRADS 4A" -- does
not reach the model; the box is grown to contain the whole mask, and ``Sample.extras`` records
``crop_box`` (top, bottom, left, right in original pixels), ``scan_box``, ``mask_pixels_outside_scan_area``
and ``mask_pixels_cropped``, plus ``original_shape`` and ``n_regions``.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.draw import polygon as fill_polygon

from rlar.data.crop import CropParams, crop_with_mask
from rlar.data.descriptors import normalise_descriptor
from rlar.data.files import display_name, list_folder
from rlar.data.io import read_header, read_image
from rlar.data.labels import canonical_level
from rlar.data.record import DESCRIPTORS, SampleInfo
from rlar.data.sources.base import Source
from rlar.data.sources.masks import mask_problem, polygon_problem
from rlar.errors import DataError

# DDTI XML tag -> canonical descriptor key, and the raw values the database uses (a fact about DDTI, kept for the
# docs and tests). The mapping itself is the shared normaliser's (rlar.data.descriptors.normalise_descriptor).
DDTI_FIELDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("composition", "composition",
     ("solid", "predominantly solid", "predominantly cystic", "cystic", "spongiform", "dense")),
    ("echogenicity", "echogenicity",
     ("hyperechogenicity", "isoechogenicity", "hypoechogenicity", "marked hypoechogenicity")),
    ("margins", "margin",
     ("well defined", "well defined smooth", "ill defined", "microlobulated", "macrolobulated", "spiculated")),
    ("calcifications", "echogenic_foci",
     ("non", "microcalcification", "microcalcifications", "macrocalcification", "macrocalcifications")),
)

# (DDTI XML tag, canonical descriptor key, {raw value: canonical value}), derived from the shared normaliser.
DDTI_DESCRIPTOR_MAP: tuple[tuple[str, str, dict[str, str]], ...] = tuple(
    (tag, key, {raw: str(normalise_descriptor(key, raw)) for raw in values}) for tag, key, values in DDTI_FIELDS
)

_IMAGE_NAME = re.compile(r"^(?P<case>.+)_(?P<k>[^_]+)\.jpg$", re.IGNORECASE)


@dataclass(frozen=True)
class _Location:
    """Where one DDTI image's pixels and polygons are (kept in ``SampleInfo.location``; hashable)."""

    path: Path
    regions: tuple[tuple[tuple[float, float], ...], ...]  # per region: ((x, y), ...) in pixel coordinates
    size: tuple[int, int]  # (width, height) from the JPEG header


def normalise_raw(value: str | None) -> str:
    """Lower-case, hyphens to spaces, collapsed whitespace: ``'Ill- defined '`` -> ``'ill defined'``."""
    if value is None:
        return ""
    return " ".join(value.replace("-", " ").lower().split())


class DDTISource(Source):
    """DDTI read from its native ``{case}.xml`` + ``{case}_{k}.jpg`` layout (see the module docstring).

    Args:
        root: the folder holding the XML and JPEG files.
        crop: crop image and mask to the ultrasound scan area (default True).
        crop_params: parameters of the scan-area detection (defaults suit DDTI).
    """

    name = "ddti"
    needs_root = True
    scale = "ddti"

    def __init__(self, root: str | Path | None, crop: bool = True, crop_params: CropParams | None = None) -> None:
        self.crop = crop
        self.crop_params = crop_params or CropParams()
        self.case_count = 0  # number of case XML files parsed successfully
        super().__init__(root)

    # ------------------------------------------------------------------------------------------ scanning
    def _scan(self) -> Iterator[SampleInfo]:
        assert self.root is not None
        if not self.root.is_dir():
            raise DataError(self.root, "DDTI root is not a folder")
        try:
            found = list_folder(self.root)
        except OSError as exc:
            raise DataError(self.root, f"cannot list the DDTI folder ({exc.strerror or exc})") from None
        for entry, reason in found.unusable:
            if entry.suffix.lower() in (".jpg", ".xml"):  # a DDTI file that vanished would otherwise go uncounted
                self.skips.add(display_name(entry.name), reason)
        images = {p.name: p for p in found.files if p.suffix.lower() == ".jpg"}
        claimed: set[str] = set()
        unreadable_cases: set[str] = set()
        xml_files = sorted((p for p in found.files if p.suffix.lower() == ".xml"), key=_case_key)
        for xml_path in xml_files:
            case = xml_path.stem
            try:
                tree = ET.parse(xml_path)
            except (ET.ParseError, OSError) as exc:
                self.skips.add(xml_path.name, f"case XML does not parse ({exc}); its images are not used")
                unreadable_cases.add(case)
                continue
            root = tree.getroot()
            if root.tag != "case":
                self.skips.add(xml_path.name, f"root element is <{root.tag}>, expected <case>; file not used")
                unreadable_cases.add(case)
                continue
            self.case_count += 1
            number = (root.findtext("number") or "").strip()
            if number and number != case:
                self.skips.add(f"case {case}", f"<number> says '{number}'; the file name '{case}' is used as case id")
            tirads, descriptors = self._case_labels(case, root)
            seen_marks: set[str] = set()
            for m_index, mark in enumerate(root.findall("mark")):
                k = (mark.findtext("image") or "").strip()
                if not k:
                    self.skips.add(f"case {case}", f"mark #{m_index + 1} has no <image> number; mark not used")
                    continue
                image_id = f"{case}_{k}"
                if image_id in seen_marks:
                    self.skips.add(image_id, "second <mark> for this image in the case XML; the first one is used")
                    continue
                seen_marks.add(image_id)
                file_name = f"{image_id}.jpg"
                path = images.get(file_name)
                if path is None:
                    self.skips.add(image_id, f"mark names image {file_name}, which is missing")
                    continue
                claimed.add(file_name)
                size = self._image_size(path)
                if size is None:
                    continue
                regions = self._parse_regions(image_id, mark.findtext("svg"), size)
                yield SampleInfo(
                    image_id=image_id,
                    patient_id=f"ddti-{case}",
                    source=self.name,
                    tirads=tirads,
                    scale=self.scale,
                    descriptors=dict(descriptors),
                    has_mask=bool(regions),
                    location=_Location(path=path, regions=regions, size=size),
                )
        for file_name in sorted(set(images) - claimed, key=_image_key):
            match = _IMAGE_NAME.match(file_name)
            owner = match.group("case") if match else None
            if owner in unreadable_cases:
                why = f"image with no annotation entry (its case XML {owner}.xml could not be used)"
            elif owner is not None and not (self.root / f"{owner}.xml").is_file():
                why = f"image with no annotation entry (no case file {owner}.xml)"
            else:
                why = "image with no annotation entry"
            self.skips.add(file_name, why)

    def _case_labels(self, case: str, root: ET.Element) -> tuple[str | None, dict[str, str | None]]:
        """TI-RADS level and canonical descriptors of one case; unknown raw values are recorded as skips."""
        raw_tirads = (root.findtext("tirads") or "").strip()
        try:
            tirads = canonical_level(raw_tirads, self.scale)
        except DataError as err:
            tirads = None
            self.skips.add(f"case {case}", f"unknown tirads value '{raw_tirads}' ({err.reason}); label set to unknown")
        descriptors: dict[str, str | None] = dict.fromkeys(DESCRIPTORS)
        for tag, key, _ in DDTI_FIELDS:
            raw = (root.findtext(tag) or "").strip()
            if not normalise_raw(raw):
                continue  # not recorded
            try:
                descriptors[key] = normalise_descriptor(key, raw)
            except DataError:
                self.skips.add(f"case {case}", f"unknown {tag} value '{raw}'; {key} set to unknown")
        return tirads, descriptors

    def _image_size(self, path: Path) -> tuple[int, int] | None:
        """(width, height) from the JPEG header without decoding pixels; None (and a Skip) if unreadable."""
        try:
            header = read_header(path)
        except DataError as err:
            self.skips.add(path.name, f"image header cannot be read ({err.reason})")
            return None
        return header.width, header.height

    def _parse_regions(
        self, image_id: str, svg_text: str | None, size: tuple[int, int]
    ) -> tuple[tuple[tuple[float, float], ...], ...]:
        """Valid polygons of one mark; malformed ones are dropped and out-of-image points clipped, with skips."""
        text = (svg_text or "").strip()
        try:
            data = json.loads(text) if text else []
        except json.JSONDecodeError as exc:
            self.skips.add(
                image_id, f"mark's region JSON does not parse ({exc.msg} at char {exc.pos}); image kept without mask"
            )
            return ()
        if not isinstance(data, list):
            self.skips.add(
                image_id, f"mark's region JSON is a {type(data).__name__}, expected a list; image kept without mask"
            )
            return ()
        if not data:
            self.skips.add(image_id, "mark has no region (empty region list); image kept without mask")
            return ()
        width, height = size
        regions: list[tuple[tuple[float, float], ...]] = []
        for r_index, region in enumerate(data):
            where = f"region {r_index + 1} of {len(data)}"
            points = region.get("points") if isinstance(region, dict) else None
            if not isinstance(points, list):
                self.skips.add(image_id, f"{where} has no 'points' list; region dropped")
                continue
            try:
                coords = [(float(p["x"]), float(p["y"])) for p in points]
            except (TypeError, KeyError, ValueError):
                self.skips.add(image_id, f"{where} has a point without numeric x/y; region dropped")
                continue
            problem = polygon_problem(coords, width, height)
            if problem is not None:
                self.skips.add(image_id, f"{where}: {problem}; region dropped")
                continue
            outside = sum(1 for x, y in coords if not (0 <= x <= width - 1 and 0 <= y <= height - 1))
            if outside:
                self.skips.add(
                    image_id,
                    f"{where}: {outside} of {len(coords)} points lie outside the {width}x{height} image; "
                    "clipped to the border",
                )
                coords = [(min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0)) for x, y in coords]
            regions.append(tuple(coords))
        if not regions:
            self.skips.add(image_id, "no valid region left in the mark; image kept without mask")
            return ()
        # The united mask must be a usable nodule too (a sliver inside the image passes the polygon checks).
        problem = mask_problem(rasterise(tuple(regions), (height, width)), self.min_mask_pixels, self.min_mask_extent)
        if problem is not None:
            self.skips.add(image_id, f"{problem}; image kept without mask")
            return ()
        return tuple(regions)

    # ------------------------------------------------------------------------------------------- loading
    def _load(self, info: SampleInfo) -> tuple[np.ndarray, np.ndarray | None, dict]:
        location: _Location = info.location
        image = read_image(location.path)
        width, height = location.size
        if image.shape != (height, width):
            decoded = f"{image.shape[1]}x{image.shape[0]}"
            raise DataError(location.path, f"decoded size {decoded} differs from header size {width}x{height}")
        mask = rasterise(location.regions, image.shape) if location.regions else None
        extras: dict[str, object] = {"original_shape": image.shape, "n_regions": len(location.regions)}
        if self.crop:
            image, mask, crop_info = crop_with_mask(image, mask, self.crop_params)
            extras.update(crop_info)
        else:
            extras["crop_box"] = None
        return image, mask, extras


def rasterise(regions: tuple[tuple[tuple[float, float], ...], ...], shape: tuple[int, int]) -> np.ndarray:
    """Union of the filled polygons ``regions`` (each ((x, y), ...)) as a bool mask of ``shape`` (H, W)."""
    mask = np.zeros(shape, dtype=bool)
    for region in regions:
        xy = np.asarray(region, dtype=np.float64)
        rows, cols = fill_polygon(xy[:, 1], xy[:, 0], shape=shape)
        mask[rows, cols] = True
    return mask


def _case_key(path: Path) -> tuple[int, int | str]:
    # Numeric case order (1, 2, ..., 10) so that infos and skips come out in a stable, human order.
    return (0, int(path.stem)) if path.stem.isdigit() else (1, path.stem)


def _image_key(file_name: str) -> tuple[int, int | str, str]:
    match = _IMAGE_NAME.match(file_name)
    case = match.group("case") if match else file_name
    return (0, int(case), file_name) if case.isdigit() else (1, case, file_name)
