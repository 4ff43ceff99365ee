"""Segment-everything proposals: compact masks, the set on offer for one image, its undo command.

A proposal keeps only its mask's bounding-box crop, bit-packed (`CompactProposal`): 100 proposals
of a 12-MP image would take 1.2 GB as full HxW bool masks, but typically a few MB this way. The
full mask is rebuilt only when a proposal is accepted.

`ProposalSet` holds the proposals of one image that are still on offer. Accepting one is an
`AcceptProposal` command on the session's UndoStack: it adds the annotation and takes the proposal
out of the set; its revert removes the annotation and puts the proposal back on offer, as long as
that set is still the live one (a set closed by navigation, a new run or "discard" is left alone).
"Accept all" is one `CompositeCommand` of AcceptProposal commands: one undo step, one redraw (the
session batches the notifications).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from annotator.core.project import Annotation, Project, annotation_from_mask


@dataclass(frozen=True, eq=False)
class CompactProposal:
    """One automatic mask, stored as its bit-packed bounding-box crop.

    bits: `np.packbits(crop, axis=1)` of the h x w bool crop (h x ceil(w/8) uint8).
    box: (x0, y0, x1, y1) of the crop in original-image pixels, x1/y1 exclusive; h = y1 - y0.
    image_size: (H, W) of the image. area: pixels in the mask.
    predicted_iou, stability_score: segment_anything's scores of the mask.
    """

    bits: np.ndarray
    box: tuple[int, int, int, int]
    image_size: tuple[int, int]
    area: int
    predicted_iou: float
    stability_score: float

    @classmethod
    def from_mask(
        cls, mask: np.ndarray, predicted_iou: float, stability_score: float
    ) -> CompactProposal | None:
        """From an HxW bool mask; None when the mask is empty."""
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(mask.any(axis=0))
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        crop = mask[y0:y1, x0:x1]
        return cls(
            np.packbits(crop, axis=1),
            (x0, y0, x1, y1),
            (int(mask.shape[0]), int(mask.shape[1])),
            int(np.count_nonzero(crop)),
            float(predicted_iou),
            float(stability_score),
        )

    @property
    def nbytes(self) -> int:
        return int(self.bits.nbytes)

    def crop(self) -> np.ndarray:
        """The h x w bool crop of the mask (see `box`)."""
        x0, _, x1, _ = self.box
        return np.unpackbits(self.bits, axis=1, count=x1 - x0).astype(bool)

    def mask(self) -> np.ndarray:
        """The HxW bool mask at the image size."""
        x0, y0, x1, y1 = self.box
        full = np.zeros(self.image_size, bool)
        full[y0:y1, x0:x1] = self.crop()
        return full

    def contains(self, x: float, y: float) -> bool:
        """Whether the pixel under image coordinate (x, y) (pixel centres at integers) is in it."""
        col, row = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        x0, y0, x1, y1 = self.box
        if not (x0 <= col < x1 and y0 <= row < y1):
            return False
        offset = col - x0
        return bool((self.bits[row - y0, offset >> 3] >> (7 - (offset & 7))) & 1)


class ProposalSet:
    """The proposals of one image still on offer, best first (segment_anything's order).

    on_change() is called after every change (to redraw). A closed set is empty for good: undo
    and redo of earlier acceptances no longer touch it.
    """

    def __init__(
        self,
        key: str,
        proposals: list[CompactProposal],
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.key = key  # the image's path, as the inference controller names it
        self._order = {id(p): i for i, p in enumerate(proposals)}
        self._items = list(proposals)
        self.on_change = on_change
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(list(self._items))

    @property
    def items(self) -> list[CompactProposal]:
        return list(self._items)

    def smallest_at(self, x: float, y: float) -> CompactProposal | None:
        """The smallest proposal containing image coordinate (x, y), or None."""
        hits = [p for p in self._items if p.contains(x, y)]
        return min(hits, key=lambda p: p.area) if hits else None

    def remove(self, proposal: CompactProposal) -> None:
        if not self.closed and proposal in self._items:
            self._items.remove(proposal)
            self._changed()

    def restore(self, proposal: CompactProposal) -> None:
        """Offer `proposal` again, at its original rank (undo of an acceptance)."""
        if self.closed or proposal in self._items or id(proposal) not in self._order:
            return
        self._items.append(proposal)
        self._items.sort(key=lambda p: self._order[id(p)])
        self._changed()

    def close(self) -> None:
        """Drop every proposal (discard, navigation, a new run); later undo/redo leave it alone."""
        self.closed = True
        self._items = []
        self.on_change = None

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


class AcceptProposal:
    """Undoable: `annotation` (made from `proposal`) joins the project and leaves `proposals`."""

    def __init__(
        self,
        annotation: Annotation,
        proposal: CompactProposal,
        proposals: ProposalSet,
        text: str = "Accept proposal",
    ) -> None:
        self.annotation = annotation
        self.proposal = proposal
        self.proposals = proposals
        self.text = text

    def apply(self, project: Project) -> None:
        project.insert_annotation(self.annotation)
        self.proposals.remove(self.proposal)

    def revert(self, project: Project) -> None:
        project.remove_annotation(self.annotation.id)
        self.proposals.restore(self.proposal)


def proposal_annotation(
    annotation_id: int, image_id: int, category_id: int, proposal: CompactProposal
) -> Annotation:
    """The annotation of an accepted proposal; its predicted IoU is kept as the COCO "score" (as
    `annotator auto` writes it)."""
    annotation = annotation_from_mask(annotation_id, image_id, category_id, proposal.mask())
    return replace(annotation, extra={"score": round(proposal.predicted_iou, 6)})
