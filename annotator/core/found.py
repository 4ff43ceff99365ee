"""What SAM 3 found in an image, as edits of a project: shared by `annotator find` and the
window's Find in all images, so both write the same annotations and the same record.

A search is named by its phrase ("car") or, for an example box, by "box X0,Y0,X1,Y1"; with the
model's fingerprint it goes to the image's `searched` record, so a rerun skips it. An instance
becomes an annotation of the category named after the phrase (or the box's label), with its
score kept as the COCO "score", as segment-everything proposals keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from annotator.core.commands import AddAnnotation, CompositeCommand, RecordSearch
from annotator.core.project import annotation_from_mask


@dataclass(frozen=True)
class Search:
    """One thing to look for: a phrase, or an example box (x0, y0, x1, y1) in image pixels
    (with an optional phrase), and the category its instances get."""

    phrase: str = ""
    box: tuple[float, float, float, float] | None = None
    label: str = ""

    @property
    def key(self) -> str:
        """How the image's `searched` record names this search."""
        if self.box is None:
            return self.phrase
        corners = ",".join(f"{v:g}" for v in self.box)
        return f"box {corners}" + (f" {self.phrase}" if self.phrase else "")

    @property
    def category(self) -> str:
        return self.label or self.phrase or "object"


def is_searched(record, model: str, search: Search) -> bool:
    return (model, search.key) in record.searched


def found_command(
    project,
    record,
    model: str,
    results: Iterable[tuple[Search, list]],
    category_ids: dict[str, int],
    first_id: int | None = None,
):
    """One undo step: every instance (objects with `score` and `mask`, a CompactProposal or
    None) becomes an annotation of its search's category (ids from `category_ids`), and each
    search is recorded as done for `model`. Returns (command, annotations added)."""
    next_id = project.next_annotation_id() if first_id is None else first_id
    commands, added = [], 0
    for search, instances in results:
        for instance in instances:
            if instance.mask is None:  # empty at the mask threshold: nothing to annotate
                continue
            annotation = annotation_from_mask(
                next_id, record.id, category_ids[search.category], instance.mask.mask()
            )
            commands.append(
                AddAnnotation(replace(annotation, extra={"score": round(float(instance.score), 6)}))
            )
            next_id += 1
            added += 1
        commands.append(RecordSearch(record.id, model, search.key))
    return CompositeCommand(f"Find in {record.file_name}", commands), added
