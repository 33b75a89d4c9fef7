"""``CamSession``: a CAM-ready ONNX model in an ONNX Runtime session, explaining images."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from onnxcam.contract import (
    CLASS_INDEX,
    INPUT,
    LOGITS,
    TARGET_CLASS,
    TARGET_SCORE,
    LayerInfo,
    ModelMetadata,
    input_gradients_name,
)
from onnxcam.runtime.graph_cuts import extract_model
from onnxcam.runtime.io_binding import run_bound
from onnxcam.runtime.inputs import (
    InputError,
    channels_first,
    check_batch,
    class_index_array,
    model_layout,
    preprocess_images,
)
from onnxcam.runtime.methods import CamMethod, LayerOutputs, MethodContext, get_method
from onnxcam.runtime.methods.passes import ModelPasses, session_of_model
from onnxcam.runtime.methods.target_passes import TargetPasses
from onnxcam.runtime.model_file import open_inference_session, read_contract
from onnxcam.runtime.normalization import minmax_normalize, zero_nonfinite_maps
from onnxcam.runtime.providers import check_session_providers, select_providers
from onnxcam.runtime.resize import resize_maps
from onnxcam.runtime.session_options import default_session_options
from onnxcam.runtime.target_inputs import target_input_arrays
from onnxcam.runtime.weighting import check_weighting

Images = np.ndarray | Sequence[np.ndarray]

SMOOTHING_FACTORS = (1.0, 0.9, 1.1)
"""Intensity factors of ``aug_smooth`` (each with and without a horizontal flip); 1.0 first."""


@dataclass(frozen=True)
class CamResult:
    """What ``CamSession.explain`` returns.

    maps: float32 in [0, 1]; (N, H, W) for a preprocessed batch, or a list of (H_i, W_i) maps,
        one per decoded image at that image's own size.
    class_index: (N,) int64, the classes explained (the given ones, else each top-1; for a
        segmentation target the class largest over the mask, for a detection target the label of
        the detection that best matches the box).
    logits: (N, K) float32: the model's own output ((N, K, H, W) for a segmentation model, the
        class scores (N, D, K) of a detector).
    raw_maps: (N, h, w) float32 at the layer's resolution, before resizing and normalisation
        (signed for weighting ``none``).
    layer, method, weighting: what was computed.
    target_scores: (N,) the differentiated target's value (``target/score``) for a model exported
        with a target other than the class logit, else None. A detection target that matched no
        detection has 0 there (and a zero map).
    """

    maps: np.ndarray | list[np.ndarray]
    class_index: np.ndarray
    logits: np.ndarray
    raw_maps: np.ndarray
    layer: str
    method: str
    weighting: str
    target_scores: np.ndarray | None = None

    def __repr__(self) -> str:
        # The arrays would print thousands of numbers: a result is described by their shapes.
        maps = (
            f"{len(self.maps)} maps of sizes {sorted({m.shape for m in self.maps})}"
            if isinstance(self.maps, list)
            else f"maps {self.maps.shape}"
        )
        return (
            f"CamResult(method={self.method!r}, weighting={self.weighting!r}, layer={self.layer!r}, {maps}, "
            f"class_index={self.class_index.tolist()}, logits {self.logits.shape}, raw_maps {self.raw_maps.shape})"
        )


def _maps_at_batch_size(at_input: np.ndarray | None, raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Normalised (N, H, W) maps at the batch's ``size``: those the graph made (``at_input``), or
    the raw (N, h, w) maps resized and min-max normalised."""
    return at_input if at_input is not None else minmax_normalize(resize_maps(raw, size))


class CamSession:
    """Computes class activation maps from a CAM-ready ONNX model.

    Args:
        path: the CAM-ready ``.onnx`` file (see ``onnxcam.contract``).
        providers: ``None`` for the best available (CUDA if onnxruntime-gpu and a GPU are
            present, else CPU), ``"cpu"``, ``"cuda"`` or ONNX Runtime provider names. Asking for
            CUDA where it is not available raises ProviderUnavailableError.
        threads: intra-op threads (default: one per core).
        session_options: full control over the ORT session options (overrides ``threads``).
        prune_graph: run each set of outputs on a copy of the graph cut down to them. ONNX Runtime
            computes every output of a file on every run, so a file exported with several layers
            or input-gradient rules makes each method pay for all of them (the input-gradient
            methods about 3x with three rules); the price is one more session (memory, a second or
            so to build) per distinct set of outputs, on first use.
        perturbation_model: another CAM-ready file of the same network (the static-int8 copy from
            ``onnxcam.export.quantize.quantize_cam_model``, say) whose forward graph runs the extra
            forward passes of Score-CAM and occlusion; the main pass stays on ``path``. Score-CAM's
            2,048 masked passes on resnet50 then cost an int8 forward each (docs/benchmarks.md).
        io_binding: run the model through ONNX Runtime's IOBinding (``onnxcam.runtime.io_binding``):
            with CUDA the batch goes to the GPU once and every output is allocated there and copied
            back once, after the run.

    >>> session = CamSession("resnet50.cam.onnx")  # doctest: +SKIP
    >>> result = session.explain(batch, method="gradcam", weighting="relu")  # doctest: +SKIP
    >>> result.maps.shape  # doctest: +SKIP
    (8, 224, 224)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: str | Sequence[str] | None = None,
        *,
        threads: int | None = None,
        session_options: ort.SessionOptions | None = None,
        prune_graph: bool = False,
        perturbation_model: str | os.PathLike | None = None,
        io_binding: bool = False,
    ):
        self.path = Path(path)
        requested = select_providers(providers)
        options = session_options or default_session_options(threads)
        self._options = options
        self._model_passes: ModelPasses | None = None
        self._target_passes: TargetPasses | None = None
        self._prune_graph = prune_graph
        self._perturbation_model = perturbation_model
        self._io_binding = io_binding
        self._pruned: dict[tuple[str, ...], ort.InferenceSession] = {}
        self.session = open_inference_session(self.path, requested, options)
        if providers is not None:
            check_session_providers(self.session, requested)
        self.metadata: ModelMetadata = read_contract(self.session, self.path)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def layers(self) -> tuple[str, ...]:
        return self.metadata.layer_names

    def _layer(self, name: str | None) -> LayerInfo:
        if name is None:
            return self.metadata.layers[0]
        try:
            return self.metadata.layer(name)
        except KeyError:
            raise ValueError(
                f"layer {name!r} is not in {self.path.name}; exported layers: {', '.join(self.layers)}"
            ) from None

    def layer_output_names(self, method: str | CamMethod, layer: str | None = None) -> list[str]:
        """The outputs of ``layer`` (default: the first exported) that ``method`` reads:
        ``activations/L``, then ``gradients/L`` and ``cam_weights/L`` where it needs them. ValueError
        for an unknown method or layer, or a layer without the CAM weights the method needs.

        >>> session.layer_output_names("gradcam")  # doctest: +SKIP
        ['activations/layer4', 'gradients/layer4']
        """
        method, layer = get_method(method), self._layer(layer)
        names = [layer.activations]
        if method.needs_gradients:
            names.append(layer.gradients)
        if method.needs_cam_weights:
            if not layer.has_cam_weights:
                raise ValueError(
                    f"method {method.name!r} needs a global-average-pool + linear head after layer "
                    f"{layer.name!r}, which {self.path.name} does not have; use 'gradcam'"
                )
            names.append(layer.cam_weights)
        if method.native_maps is not None:
            if method.native_maps not in self.metadata.native_maps:
                raise ValueError(
                    f"method {method.name!r} reads the class maps {method.native_maps!r} that the model "
                    f"computes itself; {self.path.name} has none: export an ACoL model "
                    "(`onnxcam export-synthetic` of a synthetic_acol checkpoint)"
                )
            names.append(method.native_maps)
        return names

    def _input_gradients_name(self, method: CamMethod) -> list[str]:
        rule = method.input_gradient_rule
        if rule is None:
            return []
        if rule not in self.metadata.input_gradients:
            raise ValueError(
                f"method {method.name!r} needs the input gradients with the {rule!r} rule, which "
                f"{self.path.name} does not have: export it with input_gradients=[{rule!r}] "
                f"(`onnxcam export --input-gradients {rule}`)"
            )
        return [input_gradients_name(rule)]

    def run(self, names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs ``names`` of one ONNX Runtime run on ``feeds`` (with ``prune_graph``, on the
        graph cut down to those outputs; feeds it does not read are left out)."""
        if not self._prune_graph:
            return self._run_session(self.session, list(names), feeds)
        key = tuple(names)
        if key not in self._pruned:
            model = self._passes().model
            cut = extract_model(model, [value.name for value in model.graph.input], list(key))
            self._pruned[key] = session_of_model(cut, self.session.get_providers(), self._options)
        session = self._pruned[key]
        read = {value.name for value in session.get_inputs()}
        return self._run_session(session, list(key), {name: value for name, value in feeds.items() if name in read})

    def _run_session(self, session: ort.InferenceSession, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return run_bound(session, names, feeds) if self._io_binding else session.run(names, feeds)

    def forward_logits(self, batch: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """``(M, K)`` logits of a preprocessed float32 ``(M, C, H, W)`` batch from the forward graph
        alone (no gradients, a session of its own built on first use), ``batch_size`` rows per run:
        the extra passes of faithfulness metrics and perturbation methods."""
        return self._passes().logits(np.ascontiguousarray(batch, dtype=np.float32), batch_size)

    def _passes(self) -> ModelPasses:
        if self._model_passes is None:
            self._model_passes = ModelPasses(
                self.path, self.session.get_providers(), self._options, self._perturbation_model
            )
        return self._model_passes

    def _target_context(self, fetched: dict[str, np.ndarray], target_inputs: dict[str, np.ndarray]) -> dict:
        """MethodContext's target fields for one run (empty for the logit target)."""
        target = self.metadata.target
        if target.kind == "logit":
            return {}
        if self._target_passes is None:
            self._target_passes = TargetPasses(self._passes(), target)
        return {
            "target": target,
            "target_inputs": target_inputs,
            "target_scores": fetched[TARGET_SCORE],
            "target_passes": self._target_passes,
        }

    def _maps_at_input(
        self,
        batch: np.ndarray,
        index: np.ndarray,
        method: CamMethod,
        weightings: Sequence[str],
        layers: list[LayerInfo],
        use_fused: bool,
        target_inputs: dict[str, np.ndarray] | None = None,
    ) -> tuple[dict[str, tuple[np.ndarray | None, np.ndarray]], np.ndarray, np.ndarray, np.ndarray | None]:
        """One explanation of a preprocessed batch under several weightings, from one run and one
        computation of the method's weights: ``({weighting: (maps (N, H, W) in [0, 1], or None where
        only ``raw`` was computed and the caller resizes it, raw maps)}, logits, explained classes,
        target scores or None)``. ``target_inputs``: the target's inputs ``{name: (N, ...)}``."""
        target_inputs = target_inputs or {}
        names = [LOGITS] + self._input_gradients_name(method)
        if self.metadata.target.kind != "logit":
            names += [TARGET_SCORE, TARGET_CLASS]
        for layer in layers:
            names += self.layer_output_names(method, layer.name)
        fused = {}
        if use_fused and len(layers) == 1:
            for weighting in weightings:
                heatmap = self.metadata.fused_heatmap(method.name, weighting, layers[0].name)
                if heatmap is not None:
                    fused[weighting] = heatmap.output
        names = list(dict.fromkeys(names + list(fused.values())))
        layout = self.metadata.preprocessing.layout
        feeds = {INPUT: model_layout(batch, layout), CLASS_INDEX: index, **target_inputs}
        fetched = dict(zip(names, self.run(names, feeds)))
        logits = fetched[LOGITS]
        if TARGET_CLASS in fetched:
            explained = fetched[TARGET_CLASS].astype(np.int64)
        else:
            explained = np.where(index < 0, logits.argmax(axis=1), index).astype(np.int64)
        target_context = self._target_context(fetched, target_inputs)
        raws: dict[str, list[np.ndarray]] = {weighting: [] for weighting in weightings}
        for layer in layers:
            outputs = LayerOutputs(
                activations=fetched[layer.activations],
                gradients=fetched.get(layer.gradients),
                cam_weights=fetched.get(layer.cam_weights),
                input_gradients=channels_first(fetched[input_gradients_name(method.input_gradient_rule)], layout)
                if method.input_gradient_rule
                else None,
                native_maps=fetched.get(method.native_maps) if method.native_maps else None,
            )
            context = MethodContext(batch, explained, logits, layer, self._passes(), **target_context)
            for weighting, raw in method.raw_maps_by_weighting(outputs, weightings, context).items():
                raws[weighting].append(zero_nonfinite_maps(raw.astype(np.float32)))
        if len(layers) == 1:
            maps = {w: (fetched[fused[w]] if w in fused else None, raws[w][0]) for w in weightings}
            return maps, logits, explained, fetched.get(TARGET_SCORE)
        # Several layers (LayerCAM's fusion), as pytorch-grad-cam does: each map normalised at its
        # own resolution, resized to the input, averaged, normalised again.
        size = batch.shape[2:]
        maps = {}
        for weighting in weightings:
            mean = np.mean([resize_maps(minmax_normalize(raw), size) for raw in raws[weighting]], axis=0)
            maps[weighting] = (minmax_normalize(mean), mean)
        return maps, logits, explained, fetched.get(TARGET_SCORE)

    def prepare(self, images: Images) -> tuple[np.ndarray, list[tuple[int, int]] | None]:
        """The model's float32 input for ``images`` as (N, C, H, W) (the methods' layout, whatever
        the model's ``preprocessing.layout``) and, for decoded images, their sizes."""
        preprocessing = self.metadata.preprocessing
        layout = preprocessing.layout
        if isinstance(images, np.ndarray) and images.ndim == 4 and images.dtype != np.uint8:
            channels = len(preprocessing.mean)
            return channels_first(check_batch(images, channels, preprocessing.input_size, layout), layout), None
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise InputError(
                f"got one array of shape {images.shape}; pass a batch (N, C, H, W) float32 or a "
                "list of decoded (H, W, 3) uint8 images"
            )
        images = list(images)
        sizes = [tuple(np.asarray(image).shape[:2]) for image in images]
        return channels_first(preprocess_images(images, preprocessing), layout), sizes

    def explain(
        self,
        images: Images,
        method: str | CamMethod = "gradcam",
        weighting: str = "relu",
        class_index: int | Sequence[int] | np.ndarray | None = None,
        *,
        layer: str | Sequence[str] | None = None,
        aug_smooth: bool = False,
        use_fused: bool = True,
        target_mask: np.ndarray | None = None,
        target_box: np.ndarray | Sequence[float] | None = None,
    ) -> CamResult:
        """Class activation maps for ``images``.

        Args:
            images: a float32 batch already preprocessed for the model, in its own layout
                (``(N, C, H, W)``, or ``(N, H, W, C)`` where ``metadata.preprocessing.layout`` is
                ``"NHWC"``; maps are then ``(N, H, W)``), or a list of decoded RGB uint8 ``(H, W, 3)`` images, which are
                preprocessed from the model's metadata (maps then come at each image's own size).
            method: a name in ``onnxcam.runtime.methods.METHODS`` (``"cam"``, ``"gradcam"``,
                ``"gradcam++"``, ``"scorecam"``, ...) or a configured method instance such as
                ``ScoreCAM(batch_size=64)``.
            weighting: ``"relu"``, ``"abs"``, ``"abs-weights"`` or ``"none"`` (see
                ``onnxcam.runtime.weighting``; some methods take fewer).
            class_index: the class to explain, one for all or one per image; None for each
                image's top-1 class, computed in the same pass.
            layer: which exported layer (default: the first), or several to fuse their maps
                (each normalised, resized to the input, averaged; ``raw_maps`` is then that
                average at input resolution).
            aug_smooth: test-time smoothing: average the maps of the batch flipped or not times
                intensity factors 0.9, 1, 1.1 (pytorch-grad-cam's ``aug_smooth``), all for the
                classes explained on the unaugmented batch; ``raw_maps`` is the average at input
                resolution. Costs six passes.
            use_fused: take the map from a ``heatmap/<method>/<weighting>`` output fused into the
                graph when the model has one for this layer (only for a preprocessed batch and one
                layer without smoothing; otherwise the maps are computed in numpy).
            target_mask: for a model exported with ``SegmentationRegion``: the region whose class
                score is explained, float32 ``(N, H_out, W_out)`` at the output's resolution, or
                one ``(H_out, W_out)`` mask for all; None for the whole image.
            target_box: for a model exported with ``DetectionBoxScore``: the box whose detection
                is explained, inclusive input-tensor pixels ``(x0, y0, x1, y1)``, one for all or
                ``(N, 4)``. When no detection of the class matches it, the map is zero and a
                warning says so.
        """
        return self.explain_weightings(
            images, method, (weighting,), class_index, layer=layer, aug_smooth=aug_smooth,
            use_fused=use_fused, target_mask=target_mask, target_box=target_box,
        )[weighting]

    def explain_weightings(
        self,
        images: Images,
        method: str | CamMethod,
        weightings: Sequence[str],
        class_index: int | Sequence[int] | np.ndarray | None = None,
        *,
        layer: str | Sequence[str] | None = None,
        aug_smooth: bool = False,
        use_fused: bool = True,
        target_mask: np.ndarray | None = None,
        target_box: np.ndarray | Sequence[float] | None = None,
    ) -> dict[str, CamResult]:
        """:meth:`explain` under several weightings at the cost of one: ``{weighting: CamResult}``,
        each equal to ``explain(images, method, weighting, ...)``.

        The model runs once and the method's weighting-free work (the channel weights, and behind
        them Score-CAM's masked passes, Ablation-CAM's ablations, occlusion's windows, Eigen-CAM's
        SVD) is done once; only the weighted sums differ. Arguments as :meth:`explain`.
        """
        cam_method = get_method(method)
        if self.metadata.preprocessing.layout != "NCHW" and not cam_method.single_pass:
            raise ValueError(
                f"method {cam_method.name!r} runs extra forward passes, which onnxcam feeds (N, C, H, W) "
                f"only; {self.path.name} takes {self.metadata.preprocessing.layout} input: use a "
                "single-pass method (gradcam, gradcam++, xgradcam, hirescam, layercam, cam)"
            )
        weightings = tuple(dict.fromkeys(weightings))
        if not weightings:
            raise ValueError("weightings is empty; name at least one")
        for weighting in weightings:
            cam_method.check_weighting(check_weighting(weighting))
        names = [layer] if layer is None or isinstance(layer, str) else list(layer)
        if not names:
            raise ValueError("layer is an empty list; name at least one exported layer")
        layers = [self._layer(name) for name in names]
        batch, sizes = self.prepare(images)
        index = class_index_array(class_index, batch.shape[0], self.metadata.num_classes)
        target = self.metadata.target
        target_inputs = target_input_arrays(
            target, batch.shape[0], batch.shape[2:], target_mask=target_mask, target_box=target_box
        )
        if aug_smooth:
            if target_inputs:
                raise ValueError(
                    f"aug_smooth flips the images, which would move the {target.kind} target's "
                    f"{', '.join(target_inputs)} with them: explain without aug_smooth"
                )
            variants, logits, explained, scores = self._smoothed(batch, index, cam_method, weightings, layers)
        else:
            variants, logits, explained, scores = self._maps_at_input(
                batch, index, cam_method, weightings, layers, use_fused and sizes is None, target_inputs
            )
        if target.kind == "detection" and scores is not None and (scores == 0).any():
            missed = np.flatnonzero(scores == 0).tolist()
            warnings.warn(
                f"no detection of the explained class matches target_box above IoU "
                f"{target.options.get('iou_threshold', 0.5)} in images {missed[:10]}: their maps are zero",
                stacklevel=2,
            )
        layer_names = ",".join(layer.name for layer in layers)
        results = {}
        for weighting, (at_input, raw) in variants.items():
            source = raw if at_input is None else at_input
            if sizes is None:
                maps = _maps_at_batch_size(at_input, raw, batch.shape[2:])
            else:
                maps = [minmax_normalize(resize_maps(source[i : i + 1], size))[0] for i, size in enumerate(sizes)]
            results[weighting] = CamResult(
                maps=maps,
                class_index=explained,
                logits=logits,
                raw_maps=raw,
                layer=layer_names,
                method=cam_method.name,
                weighting=weighting,
                target_scores=scores,
            )
        return results

    def _smoothed(
        self,
        batch: np.ndarray,
        index: np.ndarray,
        method: CamMethod,
        weightings: Sequence[str],
        layers: list[LayerInfo],
    ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray, np.ndarray | None]:
        """aug_smooth: maps of the six augmented batches, de-augmented, averaged, renormalised,
        per weighting: ``({weighting: (maps, mean)}, logits, explained, target scores)``."""
        totals: dict[str, np.ndarray] = {}
        logits, explained, scores = None, index, None
        for flip in (False, True):
            for factor in SMOOTHING_FACTORS:
                augmented = (batch[..., ::-1] if flip else batch) * np.float32(factor)
                variants, run_logits, run_explained, run_scores = self._maps_at_input(
                    np.ascontiguousarray(augmented, dtype=np.float32), explained, method, weightings, layers, False
                )
                if logits is None:  # the unaugmented batch comes first and fixes the classes
                    logits, explained, scores = run_logits, run_explained, run_scores
                for weighting, (at_input, raw) in variants.items():
                    maps = _maps_at_batch_size(at_input, raw, batch.shape[2:])
                    maps = maps[..., ::-1] if flip else maps
                    totals[weighting] = maps.astype(np.float64) + totals.get(weighting, 0.0)
        smoothed = {}
        for weighting, total in totals.items():
            mean = (total / (2 * len(SMOOTHING_FACTORS))).astype(np.float32)
            smoothed[weighting] = (minmax_normalize(mean), mean)
        return smoothed, logits, explained, scores
