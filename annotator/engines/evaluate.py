"""Clicks to a good mask: drive any `Segmenter` with the benchmark clicker over a project.

Every annotation of the project is a ground-truth object. Per object (see annotator.core.clicker
for where the clicks go):
- click 1 asks for three candidates and keeps the highest-scoring one (the first among equals);
- every later click asks for one mask, with the kept candidate's low-res logits as `mask_input`;
- the object is done when the prediction equals it; otherwise it gets `max_clicks` clicks.
Each image is encoded once for all of its objects. No torch, no Qt here: the engine brings them.

The report (`EvalReport.document()`) is the JSON `annotator eval --out` writes:
{"engine": str, "max_clicks": int, "noc": {"0.85": float, ...},
 "objects": [{"annotation_id": int, "image_id": int, "clicks": [[x, y, 1 or 0], ...],
              "iou": [float per click]}]}
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator.core import clicker
from annotator.engines.base import Prompts
from annotator.errors import UserError

DEFAULT_THRESHOLDS = (0.85, 0.9)
DEFAULT_MAX_CLICKS = 20
CURVE_CLICKS = (1, 2, 3, 5, 10, 20)  # mean IoU after these clicks is printed


@dataclass
class ObjectResult:
    """One object's run: clicks [(x, y, 1 or 0)] and the IoU after each."""

    annotation_id: int
    image_id: int
    clicks: list[list[int]] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)

    def document(self) -> dict:
        return {
            "annotation_id": self.annotation_id,
            "image_id": self.image_id,
            "clicks": [list(c) for c in self.clicks],
            "iou": [float(v) for v in self.iou],
        }


@dataclass
class EvalReport:
    engine: str
    max_clicks: int
    thresholds: tuple[float, ...]
    objects: list[ObjectResult] = field(default_factory=list)
    images: int = 0
    decode_seconds: float = 0.0  # every decode (the engine's work per click)
    decodes: int = 0
    encode_seconds: float = 0.0  # every encode (once per image)

    @property
    def ious(self) -> list[list[float]]:
        return [o.iou for o in self.objects]

    def noc(self) -> dict[str, float]:
        """{str(threshold): mean NoC over objects}."""
        return {
            str(float(t)): clicker.mean_noc(self.ious, t, self.max_clicks) for t in self.thresholds
        }

    def failures(self, threshold: float) -> int:
        """Objects that never reach `threshold` within max_clicks."""
        return sum(not clicker.reaches(v, threshold, self.max_clicks) for v in self.ious)

    def curve(self) -> list[float]:
        return clicker.mean_iou_curve(self.ious, self.max_clicks)

    def seconds_per_click(self) -> float:
        return self.decode_seconds / self.decodes if self.decodes else float("nan")

    def document(self) -> dict:
        return {
            "engine": self.engine,
            "max_clicks": self.max_clicks,
            "noc": self.noc(),
            "objects": [o.document() for o in self.objects],
        }

    def summary_lines(self) -> list[str]:
        """What `annotator eval` prints."""
        lines = [
            f"{self.engine}: {len(self.objects)} object(s) on {self.images} image(s), "
            f"at most {self.max_clicks} clicks"
        ]
        for key, value in self.noc().items():
            threshold = float(key)
            lines.append(
                f"NoC@{_percent(threshold)}: {value:.2f}  "
                f"({self.failures(threshold)} of {len(self.objects)} never reach IoU {threshold:g})"
            )
        curve = self.curve()
        shown = [k for k in CURVE_CLICKS if k <= self.max_clicks]
        lines.append("mean IoU: " + "  ".join(f"@{k} {curve[k - 1]:.3f}" for k in shown))
        lines.append(
            f"{self.seconds_per_click() * 1000:.0f} ms per click ({self.decodes} decodes), "
            f"{self.encode_seconds / max(1, self.images):.2f} s per image to encode"
        )
        return lines


def _percent(threshold: float) -> str:
    value = threshold * 100
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:g}"


# -- inputs --------------------------------------------------------------------------------


def parse_thresholds(text: str) -> tuple[float, ...]:
    """'0.85,0.9' -> (0.85, 0.9); UserError unless each is a number in (0, 1]."""
    values = []
    for part in str(text).split(","):
        try:
            value = float(part.strip())
        except ValueError:
            value = float("nan")
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise UserError(
                f"Bad --iou {text!r}: expected IoU thresholds in (0, 1], e.g. 0.85,0.9."
            )
        values.append(value)
    return tuple(dict.fromkeys(values))  # once each, in the order given


@dataclass
class EvalTask:
    """What an eval run will go through: images (in project order) and their objects."""

    project: object
    images: list  # ImageRecord, each with at least one object
    objects: dict[int, list]  # image id -> its annotations

    @property
    def object_count(self) -> int:
        return sum(len(v) for v in self.objects.values())


def plan(project, images: int | None = None) -> EvalTask:
    """The first `images` images of the project (all when None) and their annotations.

    Raises UserError when there is nothing to measure or an image file is missing, before any
    model is loaded."""
    records = list(project.images)
    if images is not None:
        if images < 1:
            raise UserError("--images must be at least 1.")
        records = records[:images]
    with_objects = [r for r in records if project.annotation_count(r.id)]
    if not with_objects:
        where = f"the first {images} image(s) of the project" if images else "the project"
        raise UserError(f"{where.capitalize()} hold(s) no annotations to measure against.")
    missing = [r for r in with_objects if not project.image_path(r).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(f"Image {project.image_path(missing[0])} is missing{more}.")
    objects = {r.id: project.annotations_of(r.id) for r in with_objects}
    return EvalTask(project, with_objects, objects)


# -- the run -------------------------------------------------------------------------------


def click_object(
    engine,
    embedding,
    truth: np.ndarray,
    max_clicks: int,
    on_click: Callable[[], None] | None = None,
    timer: list | None = None,
) -> tuple[list[list[int]], list[float]]:
    """Drive `engine` on one object (HxW bool `truth`) of an encoded image: (clicks, ious)."""
    points: list[tuple[float, float]] = []
    labels: list[int] = []
    clicks: list[list[int]] = []
    ious: list[float] = []
    mask = None
    logits = None
    for _ in range(max_clicks):
        click = clicker.next_click(truth, mask)
        if click is None:  # the prediction is the object: nothing left to click
            break
        points.append((click.x, click.y))
        labels.append(1 if click.positive else 0)
        first = logits is None
        prompts = Prompts(
            points=np.array(points, np.float32).reshape(-1, 2),
            labels=np.array(labels, np.int32),
            mask_input=None if first else logits[None],
            multimask=first,
        )
        start = time.perf_counter()
        prediction = engine.decode(embedding, prompts)
        index = prediction.best_index() if first else 0
        mask = np.asarray(prediction.mask(index), dtype=bool)
        logits = np.array(prediction.low_res_logits[index], np.float32)
        if timer is not None:
            timer[0] += time.perf_counter() - start
            timer[1] += 1
        if mask.shape != truth.shape:
            raise UserError(
                f"The engine returned a {mask.shape[1]}x{mask.shape[0]} mask for a "
                f"{truth.shape[1]}x{truth.shape[0]} object."
            )
        clicks.append(click.as_list())
        ious.append(clicker.iou(mask, truth))
        if on_click is not None:
            on_click()
    return clicks, ious


def evaluate(
    engine,
    task: EvalTask,
    *,
    max_clicks: int = DEFAULT_MAX_CLICKS,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    encode: Callable | None = None,
    show_progress: bool = False,
) -> EvalReport:
    """Run the protocol over every object of `task` with `engine` (a Segmenter).

    encode(image) -> Embedding: how to encode (default engine.encode; the CLI passes the
    embedding cache's). Raises UserError for an unreadable image or a mask whose size is not
    its image's."""
    from annotator.core.images import load_image

    if max_clicks < 1:
        raise UserError("--max-clicks must be at least 1.")
    encode = encode or engine.encode
    report = EvalReport(engine.name, int(max_clicks), tuple(float(t) for t in thresholds))
    timer = [0.0, 0]
    bar = _progress(task.object_count * max_clicks, show_progress)
    try:
        for record in task.images:
            image = load_image(task.project.image_path(record))
            height, width = image.shape[:2]
            start = time.perf_counter()
            embedding = encode(image)
            report.encode_seconds += time.perf_counter() - start
            report.images += 1
            for annotation in task.objects[record.id]:
                truth = _truth(annotation, (height, width), task.project.image_path(record))
                if not truth.any():
                    bar.update(max_clicks)
                    continue
                before = bar.n
                clicks, ious = click_object(
                    engine,
                    embedding,
                    truth,
                    max_clicks,
                    on_click=lambda: bar.update(1),
                    timer=timer,
                )
                bar.update(max_clicks - (bar.n - before))  # an object done early
                report.objects.append(ObjectResult(annotation.id, record.id, clicks, ious))
                bar.set_postfix(objects=len(report.objects))
    finally:
        bar.close()
    report.decode_seconds, report.decodes = timer
    if not report.objects:
        raise UserError("Every annotation to measure against has an empty mask.")
    return report


def _truth(annotation, shape: tuple[int, int], image_path: Path) -> np.ndarray:
    try:
        mask = annotation.mask()
    except ValueError as exc:
        raise UserError(f"Annotation {annotation.id} has a corrupt mask ({exc}).") from None
    if mask.shape != shape:
        raise UserError(
            f"Annotation {annotation.id} is {mask.shape[1]}x{mask.shape[0]} but its image "
            f"{image_path.name} is {shape[1]}x{shape[0]}."
        )
    return mask


def _progress(total: int, show: bool):
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="clicks", unit="click", file=sys.stderr, disable=not show)


# -- reports on disk -----------------------------------------------------------------------


def write_report(report: EvalReport, path: Path) -> None:
    from annotator.core.atomic import atomic_writer

    data = json.dumps(report.document(), indent=1).encode("utf-8") + b"\n"
    try:
        with atomic_writer(Path(path)) as out:
            out.write(data)
    except OSError as exc:
        raise UserError(f"Cannot write {path}: {exc.strerror or exc}.") from None


@dataclass
class LoadedReport:
    """A report read back (for --compare): its engine, max clicks, NoC and IoU per click."""

    path: Path
    engine: str
    max_clicks: int
    noc: dict[str, float]
    ious: list[list[float]]

    def curve(self) -> list[float]:
        return clicker.mean_iou_curve(self.ious, self.max_clicks)


def read_report(path: Path) -> LoadedReport:
    """Read a report `annotator eval --out` wrote. Raises UserError (one sentence) otherwise."""
    path = Path(path).expanduser()
    try:
        document = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist.") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path.name} is not a readable JSON report ({exc}).") from None
    try:
        engine = document["engine"]
        max_clicks = document["max_clicks"]
        noc = {str(k): float(v) for k, v in document["noc"].items()}
        ious = [[float(v) for v in o["iou"]] for o in document["objects"]]
        if not isinstance(engine, str) or not isinstance(max_clicks, int) or max_clicks < 1:
            raise TypeError("engine or max_clicks")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path.name} is not an eval report (bad or missing {exc}).") from None
    return LoadedReport(path, engine, max_clicks, noc, ious)


def plot_curves(reports: Sequence, path: Path) -> None:
    """Mean IoU against clicks, one line per report (each has .engine, .max_clicks, .curve()),
    as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    path = Path(path).expanduser()
    if path.suffix.lower() != ".png":
        raise UserError(f"The plot is written as PNG: name it *.png, not {path.name}.")
    names = [r.engine for r in reports]
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for report in reports:
        curve = report.curve()
        label = report.engine
        if names.count(label) > 1 and getattr(report, "path", None) is not None:
            label = f"{label} ({Path(report.path).name})"
        axes.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=label)
    longest = max(r.max_clicks for r in reports)
    axes.set_xlim(0.5, longest + 0.5)
    axes.set_ylim(0.0, 1.0)
    axes.set_xticks(range(1, longest + 1, 1 if longest <= 20 else max(1, longest // 10)))
    axes.set_xlabel("clicks")
    axes.set_ylabel("mean IoU")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise UserError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    finally:
        plt.close(figure)
