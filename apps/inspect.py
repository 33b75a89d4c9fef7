"""``onnxcam inspect``: what a CAM-ready model has learnt, as a page (docs/inspect.md).

One batched pass of the model over a data set gives a layer's activations; from them: the nearest
neighbours of images by their spatially averaged features and the neighbour-label agreement, a
seeded t-SNE map with its trustworthiness, a grid of a few images' channel maps, and each chosen
channel's maximally activating patches cropped to the unit's receptive field (read from the graph).
Where the model has ``input_gradients/plain``, class visualization by regularized gradient ascent.
``DIR/index.html`` shows the pictures, ``DIR/inspect.json`` holds the numbers.
"""

from __future__ import annotations

import argparse
import html
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxcam.apps.eval_commands import add_dataset_options, eval_set_from_args
from onnxcam.atomic_write import write_atomically, write_text_atomically

QUERIES = 6
"""Query images drawn in the nearest-neighbour grid."""
GRID_IMAGES = 3
"""Images whose channel maps are drawn."""
GRID_CHANNELS = 64
"""Channel maps per image in the activation grid (the first ones)."""
DEFAULT_CHANNELS = 8
"""Channels whose patches are drawn when ``--channels`` is not given: those whose averaged
activation varies most across the images (the most selective)."""
DEFAULT_CLASSES = 8
TSNE_MAX_IMAGES = 2000
"""t-SNE runs on a seeded sample of this many images at most (its cost grows as N log N)."""
THUMBNAILS = 40
"""Images drawn as thumbnails on the t-SNE map."""

INSPECT_HELP = """\
Analyse a CAM-ready model's behaviour on a data set and write DIR/index.html (pictures) and
DIR/inspect.json (numbers): nearest neighbours by the layer's averaged features and their label
agreement, a t-SNE map and its trustworthiness, channel maps, maximally activating patches
cropped to the receptive field, and class visualization by gradient ascent (models exported with
--input-gradients plain)."""


def _index_list(text: str | None, name: str) -> list[int] | None:
    """``"0,3,8-11"`` -> ``[0, 3, 8, 9, 10, 11]``; None stays None."""
    if text is None:
        return None
    values = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            values += list(range(int(low), int(high) + 1)) if high else [int(low)]
    except ValueError:
        raise ValueError(f"--{name} takes integers and ranges like 0,3,8-11; got {text!r}") from None
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` command."""
    parser = subparsers.add_parser(
        "inspect", help="nearest neighbours, t-SNE, channel maps, top patches, class visualization",
        description=INSPECT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter, conflict_handler="resolve",
    )
    parser.add_argument("model", type=Path, metavar="MODEL.onnx", help="a CAM-ready model")
    add_dataset_options(parser)
    # The data-set options' --classes (VOC class names) gives way to the classes visualized here.
    parser.set_defaults(classes=None)
    parser.add_argument("--out", type=Path, default=Path("reports/inspect"), metavar="DIR", help="output folder")
    parser.add_argument("--layer", help="exported layer (default: the first)")
    parser.add_argument(
        "--channels", dest="channels", metavar="LIST",
        help=f"channels whose top patches are drawn, e.g. 0,5,10-13 (default: the {DEFAULT_CHANNELS} most selective)",
    )
    parser.add_argument(
        "--classes", dest="visualize_classes", metavar="LIST",
        help=f"classes to visualize, e.g. 0-11 (default: the data set's {DEFAULT_CLASSES} most frequent labels)",
    )
    parser.add_argument("--k", type=int, default=5, help="neighbours per query and patches per channel (default 5)")
    parser.add_argument("--steps", type=int, default=200, help="class visualization ascent steps (default 200)")
    parser.add_argument("--learning-rate", type=float, default=10.0, help="ascent step size (default 10)")
    parser.add_argument("--l2", type=float, default=1e-3, help="ascent L2 penalty lambda (default 1e-3)")
    parser.add_argument("--blur-every", type=int, default=10, metavar="N", help="blur the ascent every N steps (default 10; 0: never)")
    parser.add_argument("--blur-sigma", type=float, default=0.8, metavar="PX", help="blur standard deviation (default 0.8)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per model run (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of t-SNE, samples and ascent (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    """Run ``onnxcam inspect``; returns the exit code."""
    if not args.model.is_file():
        raise FileNotFoundError(f"model {args.model} not found")
    data = eval_set_from_args(args, args.model)
    document = inspect_model(
        args.model, data, args.out, layer=args.layer, channels=_index_list(args.channels, "channels"),
        classes=_index_list(args.visualize_classes, "classes"), k=args.k,
        ascent={"steps": args.steps, "learning_rate": args.learning_rate, "l2": args.l2,
                "blur_every": args.blur_every, "blur_sigma": args.blur_sigma},
        batch_size=args.batch_size, seed=args.seed,
        progress=not args.quiet,
    )
    summary = f"neighbour-label agreement {document['neighbour_label_agreement']:.3f} " \
        f"(chance {document['neighbour_label_agreement_chance']:.3f}), t-SNE trustworthiness {document['trustworthiness']:.3f}"
    print(f"{args.model.name} {document['layer']} on {document['n_images']} images: {summary}")
    print(f"wrote {args.out / 'index.html'} and {args.out / 'inspect.json'}")
    return 0


@dataclass
class LayerPass:
    """One pass of the model over a set: ``features`` ``(N, C)`` averaged activations, ``peaks``
    (:func:`~onnxcam.eval.behaviour.channel_peaks`), ``predicted`` ``(N,)`` top-1 classes, ``grid_maps``
    ``{image: (C, h, w)}`` of the images whose maps are drawn."""

    features: np.ndarray
    peaks: tuple[np.ndarray, np.ndarray, np.ndarray]
    predicted: np.ndarray
    grid_maps: dict[int, np.ndarray]


def layer_pass(session, data, layer: str, grid_images: Sequence[int], batch_size: int, progress: bool) -> LayerPass:
    """The model run once over ``data`` in batches, keeping only reductions of the activations."""
    from tqdm import tqdm

    from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS, TOP1_CLASS, activations_name
    from onnxcam.eval.behaviour import channel_peaks, spatial_mean

    features, peaks, predicted, grid_maps = [], [], [], {}
    names = [LOGITS, activations_name(layer)]
    starts = range(0, len(data), batch_size)
    for start in tqdm(starts, desc=f"{layer} activations", unit="batch", disable=not progress):
        indices = range(start, min(start + batch_size, len(data)))
        batch, _ = session.prepare([data.images[i] for i in indices])
        logits, activations = session.run(names, {INPUT: batch, CLASS_INDEX: np.full(len(batch), TOP1_CLASS)})
        features.append(spatial_mean(activations))
        peaks.append(channel_peaks(activations))
        predicted.append(logits.argmax(axis=1))
        grid_maps.update({i: activations[i - start] for i in grid_images if i in indices})
    stacked = tuple(np.concatenate([p[j] for p in peaks]) for j in range(3))
    return LayerPass(np.concatenate(features), stacked, np.concatenate(predicted), grid_maps)


def image_labels(data) -> np.ndarray:
    """``(N,)`` each image's label: the first class naming its first object."""
    return np.array([classes[0][0] for classes in data.box_classes], dtype=np.int64)


def _spread(labels: np.ndarray, count: int, rng: np.random.Generator) -> list[int]:
    """``count`` image indices, one per label in turn (labels in order of first appearance), seeded."""
    order = rng.permutation(labels.size)
    chosen, seen = [], set()
    for i in order:
        if labels[i] not in seen:
            chosen.append(int(i))
            seen.add(labels[i])
    chosen += [int(i) for i in order if int(i) not in chosen]
    return chosen[:count]


def model_view(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A decoded RGB uint8 image as the model sees it (resized to its input), uint8 ``(H, W, 3)``."""
    from onnxcam.runtime.resize import resize_image

    return np.clip(resize_image(image, size) + 0.5, 0, 255).astype(np.uint8)


def inspect_model(
    model: Path,
    data,
    out: Path,
    *,
    layer: str | None = None,
    channels: Sequence[int] | None = None,
    classes: Sequence[int] | None = None,
    k: int = 5,
    ascent: Mapping[str, float] | None = None,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Analyse ``model`` on ``data`` (an :class:`~onnxcam.eval.evalset.EvalSet`); write ``out/index.html``,
    its pictures and ``out/inspect.json``; return the JSON document."""
    from onnxcam.eval.behaviour import (
        chance_label_agreement,
        check_channels,
        nearest_neighbours,
        neighbour_label_agreement,
        receptive_field,
        top_patches,
        tsne_embedding,
    )
    from onnxcam.runtime import CamSession

    session = CamSession(model, prune_graph=True)
    metadata = session.metadata
    layer = layer or metadata.layer_names[0]
    if layer not in metadata.layer_names:
        raise ValueError(f"layer {layer!r} is not in {model.name}; exported layers: {', '.join(metadata.layer_names)}")
    if len(data) < 4:
        raise ValueError(f"the data set has {len(data)} images; inspect needs at least 4")
    if not 1 <= k <= len(data) - 1:
        raise ValueError(f"--k {k}: needs 1 <= k <= {len(data) - 1} (the images less one)")
    info = metadata.layer(layer)
    if channels is not None:
        check_channels(channels, info.shape[0], layer)
    if classes is not None:
        check_classes(session, classes)
    field = receptive_field(model, layer)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = image_labels(data)
    names = class_names(metadata)
    seconds = {}

    started = time.perf_counter()
    grid_images = _spread(labels, GRID_IMAGES, rng)
    passed = layer_pass(session, data, layer, grid_images, batch_size, progress)
    seconds["activations"] = time.perf_counter() - started

    neighbours = nearest_neighbours(passed.features, k)
    agreement = neighbour_label_agreement(labels, neighbours)
    started = time.perf_counter()
    sample = np.sort(rng.choice(len(data), min(len(data), TSNE_MAX_IMAGES), replace=False))
    embedding = tsne_embedding(passed.features[sample], seed=seed)
    seconds["tsne"] = time.perf_counter() - started

    if channels is None:
        channels = np.argsort(-passed.features.var(axis=0), kind="stable")[:DEFAULT_CHANNELS].tolist()
    patches = top_patches(passed.peaks, channels, k, field)

    size = metadata.preprocessing.input_size
    view = _ViewCache(data, size)
    pictures = {
        "neighbours": plot_neighbours(out / "neighbours.png", view, neighbours, _spread(labels, QUERIES, rng), labels, names),
        "tsne": plot_tsne(out / "tsne.png", view, embedding.points, sample, labels, names, rng),
        "activations": plot_activations(out / "activations.png", view, passed.grid_maps, layer, labels, names),
        "patches": plot_patches(out / "patches.png", view, patches, field),
    }
    visualization = None
    if classes is not None or "plain" in metadata.input_gradients:
        started = time.perf_counter()
        visualization = visualize_classes(session, classes, labels, ascent or {}, seed, progress)
        seconds["class_visualization"] = time.perf_counter() - started
        pictures["class_visualization"] = plot_class_images(out / "class_visualization.png", visualization, metadata, names)
        pictures["class_scores"] = plot_class_scores(out / "class_scores.png", visualization, names)

    document = {
        "model": str(model), "arch": metadata.arch, "layer": layer, "layer_shape": list(info.shape),
        "dataset": data.spec or {"dataset": data.name}, "n_images": len(data),
        "top1_accuracy": float(np.mean([p in data.accepted(i) for i, p in enumerate(passed.predicted)])),
        "k": k, "neighbour_label_agreement": agreement, "neighbour_label_agreement_chance": chance_label_agreement(labels),
        "trustworthiness": embedding.trustworthiness,
        **_details(embedding, sample.size, seed, field, patches, data.ids, visualization, ascent or {}),
        "seconds": {key: round(value, 2) for key, value in seconds.items()},
    }
    write_text_atomically(out / "inspect.json", json.dumps(document, indent=1) + "\n")
    write_text_atomically(out / "index.html", index_html(document, pictures))
    return document


def _details(embedding, tsne_images, seed, field, patches, ids, visualization, ascent) -> dict:
    """The ``tsne``, ``receptive_field``, ``patches`` and ``class_visualization`` entries of inspect.json."""
    return {
        "tsne": {"images": int(tsne_images), "seed": seed, "perplexity": embedding.perplexity,
                 "trust_neighbours": embedding.trust_neighbours, "kl_divergence": embedding.kl_divergence},
        "receptive_field": {"size": field.size, "stride": field.jump, "start": field.start,
                            "whole_image": field.whole_image, "exact": field.exact, "note": field.note,
                            "description": field.describe()},
        "patches": {str(c): [{"image": ids[h.image], "y": h.y, "x": h.x, "activation": h.activation,
                              "box": list(h.box)} for h in hits] for c, hits in patches.items()},
        "class_visualization": None if visualization is None else {
            "classes": visualization.classes.tolist(), **ascent,
            "initial_score": visualization.scores[0].tolist(), "final_score": visualization.scores[-1].tolist(),
        },
    }


def check_classes(session, classes: Sequence[int]) -> None:
    """Refuse class indices out of range, or a model without input gradients, before any work."""
    from onnxcam.eval.behaviour.class_visualization import check_input_gradients

    count = session.metadata.num_classes
    bad = [c for c in classes if not 0 <= c < count]
    if bad:
        raise ValueError(f"class {bad[0]} is out of range for {session.path.name}, which has {count} classes (0..{count - 1})")
    check_input_gradients(session)


def class_names(metadata) -> dict[int, str]:
    """A short name per class: the model's label (cut at the first comma) or the index."""
    known = metadata.class_labels or ()
    return {c: (known[c].split(",")[0] if c < len(known) else f"class {c}") for c in range(metadata.num_classes)}


def visualize_classes(session, classes, labels, ascent: Mapping[str, float], seed: int, progress: bool):
    """Class visualization of ``classes`` (default: the most frequent labels of the set); ``ascent``:
    keyword arguments of :func:`~onnxcam.eval.behaviour.class_visualization`."""
    from functools import partial

    from tqdm import tqdm

    from onnxcam.eval.behaviour import class_visualization

    if classes is None:
        values, counts = np.unique(labels, return_counts=True)
        classes = sorted(values[np.argsort(-counts, kind="stable")][:DEFAULT_CLASSES].tolist())
    bar = partial(tqdm, desc=f"class visualization ({len(classes)} classes)", unit="step", disable=not progress)
    return class_visualization(session, classes, **ascent, seed=seed, progress=bar)


class _ViewCache:
    """Images of the set as the model sees them, decoded and resized on first use."""

    def __init__(self, data, size: tuple[int, int]):
        self.data, self.size, self.cache = data, size, {}

    def __getitem__(self, i: int) -> np.ndarray:
        if i not in self.cache:
            self.cache[i] = model_view(self.data.images[i], self.size)
        return self.cache[i]


# ---- pictures (matplotlib, the report extra) ----

def _figure(rows: int, columns: int, cell: float = 1.4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(rows, columns, figsize=(columns * cell, rows * cell + 0.3), squeeze=False)
    for axis in axes.ravel():
        axis.set_axis_off()
    return figure, axes


def _save(figure, path: Path) -> str:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=90))
    plt.close(figure)
    return path.name


def _frame(axis, colour: str) -> None:
    """A coloured border around an image axis (kept visible while the axis is off)."""
    axis.set_axis_on()
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)


def plot_neighbours(path, view, neighbours, queries, labels, names) -> str:
    """One row per query: the query, then its neighbours nearest first, framed green when they share
    its label, red otherwise."""
    k = neighbours.indices.shape[1]
    figure, axes = _figure(len(queries), k + 1)
    for row, query in enumerate(queries):
        axes[row, 0].imshow(view[query])
        axes[row, 0].set_title(f"query: {names[labels[query]]}"[:24], fontsize=7)
        _frame(axes[row, 0], "black")
        for column, (index, distance) in enumerate(zip(neighbours.indices[query], neighbours.distances[query]), 1):
            axis = axes[row, column]
            axis.imshow(view[int(index)])
            axis.set_title(f"{names[labels[index]]}"[:16] + f"\nd={distance:.3f}", fontsize=6)
            _frame(axis, "green" if labels[index] == labels[query] else "red")
    return _save(figure, path)


def plot_tsne(path, view, points, sample, labels, names, rng) -> str:
    """The t-SNE map, a dot per image coloured by label, with thumbnails of a sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    figure, axis = plt.subplots(figsize=(9, 7.5))
    sample_labels = labels[sample]
    palette = plt.get_cmap("tab20")
    for n, label in enumerate(np.unique(sample_labels)):
        chosen = sample_labels == label
        axis.scatter(points[chosen, 0], points[chosen, 1], s=9, color=palette(n % 20), label=names[label][:20])
    zoom = 22 / max(view.size)
    for j in rng.choice(sample.size, min(THUMBNAILS, sample.size), replace=False):
        box = AnnotationBbox(OffsetImage(view[int(sample[j])], zoom=zoom), points[j], frameon=True, pad=0.1)
        axis.add_artist(box)
    axis.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title("t-SNE of the averaged layer features (cosine distance)")
    return _save(figure, path)


def plot_activations(path, view, grid_maps, layer, labels, names) -> str:
    """Per image: the image, then its first channel maps as a grid (each map min-max normalised)."""
    from onnxcam.eval.behaviour import activation_grid

    figure, axes = _figure(len(grid_maps), 2, cell=4.0)
    for row, (image, maps) in enumerate(sorted(grid_maps.items())):
        axes[row, 0].imshow(view[image])
        axes[row, 0].set_title(names[labels[image]][:30], fontsize=9)
        axes[row, 1].imshow(activation_grid(maps[:GRID_CHANNELS]), cmap="viridis", interpolation="nearest")
        axes[row, 1].set_title(f"{layer}: channels 0-{min(GRID_CHANNELS, len(maps)) - 1} of {len(maps)}", fontsize=9)
    return _save(figure, path)


def plot_patches(path, view, patches, field) -> str:
    """Per channel: its top patches, each the unit's receptive field (grey where it leaves the image)."""
    from onnxcam.eval.behaviour import field_crop

    k = max(len(hits) for hits in patches.values())
    figure, axes = _figure(len(patches), k)
    for row, (channel, hits) in enumerate(patches.items()):
        for column, hit in enumerate(hits):
            axes[row, column].imshow(field_crop(view[hit.image], field, hit.y, hit.x))
            label = f"ch {channel}: " if column == 0 else ""
            axes[row, column].set_title(f"{label}{hit.activation:.2f}", fontsize=7)
    return _save(figure, path)


def plot_class_images(path, visualization, metadata, names) -> str:
    from onnxcam.eval.behaviour import input_to_rgb

    images = input_to_rgb(visualization.images, metadata.preprocessing)
    columns = min(len(images), 6)
    figure, axes = _figure(-(-len(images) // columns), columns, cell=2.2)
    for i, (image, cls) in enumerate(zip(images, visualization.classes)):
        axis = axes[i // columns, i % columns]
        axis.imshow(image)
        axis.set_title(f"{names[int(cls)]}"[:22] + f"\nS_c {visualization.scores[-1, i]:.1f}", fontsize=8)
    return _save(figure, path)


def plot_class_scores(path, visualization, names) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    palette = plt.get_cmap("tab20")
    for i, cls in enumerate(visualization.classes):
        axis.plot(visualization.scores[:, i], color=palette(i % 20), label=names[int(cls)][:20])
    axis.set_xlabel("ascent step")
    axis.set_ylabel("class score S_c (logit)")
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(figure, path)


# ---- the page ----

def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>" for name, value in rows)
    return f"<table>{cells}</table>"


def index_html(document: dict, pictures: dict[str, str]) -> str:
    """The page: the numbers, then each picture with a sentence on how to read it."""
    field = document["receptive_field"]
    numbers = [
        ("model", f"{document['model']} ({document['arch']})"),
        ("layer", f"{document['layer']} {tuple(document['layer_shape'])}"),
        ("data set", f"{document['dataset'].get('dataset')}, {document['n_images']} images"),
        ("top-1 accuracy", f"{document['top1_accuracy']:.3f}"),
        (f"neighbour-label agreement (k={document['k']})",
         f"{document['neighbour_label_agreement']:.3f} (chance {document['neighbour_label_agreement_chance']:.3f})"),
        ("t-SNE trustworthiness", f"{document['trustworthiness']:.3f} ({document['tsne']['images']} images, "
                                  f"perplexity {document['tsne']['perplexity']:.1f})"),
        ("receptive field", field["description"]),
    ]
    sections = [
        ("Nearest neighbours", "neighbours",
         "Each row: a query image, then its nearest images by cosine distance between the layer's features "
         "averaged over positions. Green frame: same label as the query; red: another."),
        ("t-SNE", "tsne", "The same features mapped to 2-D by t-SNE (seeded), coloured by label, with thumbnails."),
        ("Layer activations", "activations", "Channel maps of a few images, each map scaled to its own range."),
        ("Maximally activating patches", "patches",
         "Per channel, the images and positions where it responds most, cropped to the unit's receptive field "
         "(grey: where the field reaches beyond the image)."),
        ("Class visualization", "class_visualization",
         "Inputs found by gradient ascent on each class score, I += lr (dS_c/dI - 2 lambda I), with jitter, "
         "blur and clipping."),
        ("Class score per step", "class_scores", "The class score S_c of each image along the ascent."),
    ]
    body = [f"<h1>onnxcam inspect: {html.escape(Path(document['model']).name)}</h1>", _table(numbers)]
    for title, key, text in sections:
        if key in pictures:
            body.append(f"<h2>{title}</h2><p>{html.escape(text)}</p><img src='{pictures[key]}'>")
    if "class_visualization" not in pictures:
        body.append("<h2>Class visualization</h2><p>Not available: the model has no input gradients; export it "
                    "with <code>--input-gradients plain</code>.</p>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>onnxcam inspect</title>"
        "<style>body{font-family:sans-serif;max-width:1300px;margin:auto} img{max-width:100%}"
        " th{text-align:left;padding-right:1em}</style></head><body>" + "".join(body) + "</body></html>\n"
    )
