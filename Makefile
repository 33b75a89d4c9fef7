# Every target sets itself up: the first run creates .venv and installs the tested versions.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-all demo bench report inspect clean edge-install edge-test openvino-xai-venv web

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m pip install --quiet -c constraints.txt --no-deps grad-cam ttach quantus
	touch $(STAMP)

test: $(STAMP) edge-install
	$(PY) -m pytest -q

# The edge parity tests (docs/edge.md) run onnxruntime-node and onnxruntime-web from edge/ with
# Node.js; without node and npm they skip, and say so. --ignore-scripts: the packages' postinstall
# downloads CUDA binaries, which the CPU parity tests do not need.
EDGE_STAMP := edge/node_modules/.installed

edge-install:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(EDGE_STAMP); \
	else \
		echo "make: node/npm not found: the onnxruntime-node and onnxruntime-web edge tests will be SKIPPED"; \
	fi

$(EDGE_STAMP): edge/package.json edge/package-lock.json
	cd edge && npm ci --ignore-scripts --no-audit --no-fund
	touch $(EDGE_STAMP)

# OpenVINO XAI (a peer of make bench, docs/benchmarks.md) pins openvino 2024.4 and numpy<2: it gets a
# virtual environment of its own, for make bench and make edge-test only (make test never needs it).
OPENVINO_XAI_VENV := .venv-openvino-xai
OPENVINO_XAI_STAMP := $(OPENVINO_XAI_VENV)/.installed

openvino-xai-venv: $(OPENVINO_XAI_STAMP)

$(OPENVINO_XAI_STAMP): benchmarks/openvino_xai_constraints.txt
	test -x $(OPENVINO_XAI_VENV)/bin/python || $(PYTHON) -m venv $(OPENVINO_XAI_VENV)
	$(OPENVINO_XAI_VENV)/bin/python -m pip install --quiet -c benchmarks/openvino_xai_constraints.txt openvino-xai==1.1.0
	touch $(OPENVINO_XAI_STAMP)

edge-test: $(STAMP) edge-install $(OPENVINO_XAI_STAMP)
	$(PY) -m pytest -q -rs tests/edge tests/export/test_quantize.py tests/export/test_mobile.py
	$(PY) -m pytest -q -rs -p no:cacheprovider benchmarks/test_openvino_xai.py -k parity

# The on-device page (edge/web): builds the fused int8 EfficientNet-Lite0 once, serves reports/web
# on http://127.0.0.1:8000/index.html (cross-origin isolated, so WebAssembly gets its threads).
web: $(STAMP) edge-install
	$(PY) -m onnxcam web --out reports/web

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

# The demo installs only what it needs (the demo extra: export, eval, scikit-image's photos).
DEMO_STAMP := $(VENV)/.installed-demo

$(DEMO_STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[demo]"
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m onnxcam demo --out reports/demo

# The localization report (issue 5): export the committed synthetic models and EfficientNet-Lite0
# CAM-ready, with the input gradients of saliency, guided backprop, deconvnet and Guided Grad-CAM,
# evaluate every method of the runtime and the weightings relu, abs, abs-weights, write
# reports/localization/report.{md,html} and metrics.csv. `onnxcam eval` runs each method on the
# graph cut to the outputs it reads, so the input gradients cost only the methods that use them.
# The exports are single-threaded: they run side by side. 26 min 44 s measured on an idle 2-core machine
# (docs/localization_report.md).
# METHOD_BUDGET (seconds per method and model) is a safety net sized to let every method run on
# all 2,000 images on such a machine; a slower machine cuts the slowest methods to a prefix of the
# images, and the report gives n for every row. Reruns resume: finished result files are kept.
# The map metrics (issue 16: threshold-free localization, faithfulness, ROAD, sanity) come with
# every method; faithfulness and ROAD cost extra forward passes (0.07 and 0.35 CPU s per map on
# synthetic_resnet), so each gets METRICS_BUDGET seconds per method and model: the prefix of the
# images it pays for, in chunks of 10 (about 50-150 images for faithfulness, 10-30 for ROAD; the report
# gives their n), and the sanity step sizes its sample by it too. docs/localization_report.md has
# the estimate of the whole run and its measured time (about 39 min on an idle 2-core machine).
REPORT := reports/localization
REPORT_MODELS := $(REPORT)/models
METHOD_BUDGET ?= 400
METRICS_BUDGET ?= 3
INPUT_GRADIENTS := plain,guided,deconvnet
# ACOL_MODEL: ACoL on synthetic_resnet's backbone, so the report's "ACoL vs CAM" section compares its
# acol maps with CAM on synthetic_resnet (issue 22); only the methods that comparison reads, on
# the same 2,000 images (ACOL_IMAGES), so that the whole report stays near 45 min. DETECTION_MODEL: scored as
# detections (COCO AP) on DETECTION_IMAGES multi-object images by `onnxcam eval --detection`
# (docs/detection.md).
SYNTHETIC_MODELS := synthetic_resnet synthetic_vgg
ACOL_MODEL := synthetic_acol
ACOL_IMAGES ?= 2000
DETECTION_MODEL := synthetic_multilabel
DETECTION_IMAGES ?= 200
REPORT_FILES := $(foreach m,$(SYNTHETIC_MODELS) $(ACOL_MODEL) $(DETECTION_MODEL) efficientnet_lite0,$(REPORT_MODELS)/$(m).onnx)
CORES := $(shell nproc 2>/dev/null || echo 2)

$(REPORT_MODELS)/%.onnx: models/synthetic/%.pt $(STAMP)
	$(PY) -m onnxcam export-synthetic $< --input-gradients $(INPUT_GRADIENTS) --out $@

# The detection methods (CAM, Grad-CAM, Grad-CAM++) read no input gradients.
$(REPORT_MODELS)/$(DETECTION_MODEL).onnx: models/synthetic/$(DETECTION_MODEL).pt $(STAMP)
	$(PY) -m onnxcam export-synthetic $< --out $@

$(REPORT_MODELS)/efficientnet_lite0.onnx: $(STAMP)
	$(PY) -m onnxcam export --arch efficientnet_lite0 --input-gradients $(INPUT_GRADIENTS) --out $@

report: $(STAMP)
	$(MAKE) --no-print-directory -j$(CORES) $(REPORT_FILES)
	$(PY) -m onnxcam eval $(foreach m,$(SYNTHETIC_MODELS),$(REPORT_MODELS)/$(m).onnx) \
		--dataset synthetic --images 2000 --chunk 10 --method-budget $(METHOD_BUDGET) \
		--metrics-budget $(METRICS_BUDGET) --out $(REPORT) --no-report \
		--detection $(REPORT_MODELS)/$(DETECTION_MODEL).onnx --detection-images $(DETECTION_IMAGES)
	$(PY) -m onnxcam eval $(REPORT_MODELS)/$(ACOL_MODEL).onnx --dataset synthetic --images $(ACOL_IMAGES) --chunk 10 \
		--method acol --method cam --method gradcam --method-budget $(METHOD_BUDGET) \
		--metrics-budget $(METRICS_BUDGET) --out $(REPORT) --no-report
	$(PY) -m onnxcam eval $(REPORT_MODELS)/efficientnet_lite0.onnx --dataset demo-photos --chunk 1 \
		--method-budget $(METHOD_BUDGET) --metrics-budget $(METRICS_BUDGET) --out $(REPORT)

# Model behaviour pages (issue 21, docs/inspect.md): synthetic_resnet on 1,000 synthetic held-out
# images and EfficientNet-Lite0 on the demo photos, each exported with the plain input gradients
# that class visualization ascends; reports/inspect/<model>/index.html and inspect.json.
INSPECT := reports/inspect
INSPECT_MODELS := $(INSPECT)/models

$(INSPECT_MODELS)/synthetic_resnet.onnx: models/synthetic/synthetic_resnet.pt $(STAMP)
	$(PY) -m onnxcam export-synthetic $< --input-gradients plain --out $@

$(INSPECT_MODELS)/efficientnet_lite0.onnx: $(STAMP)
	$(PY) -m onnxcam export --arch efficientnet_lite0 --input-gradients plain --out $@

inspect: $(STAMP)
	$(MAKE) --no-print-directory -j$(CORES) $(INSPECT_MODELS)/synthetic_resnet.onnx $(INSPECT_MODELS)/efficientnet_lite0.onnx
	$(PY) -m onnxcam inspect $(INSPECT_MODELS)/synthetic_resnet.onnx --dataset synthetic --images 1000 \
		--classes 0-11 --out $(INSPECT)/synthetic_resnet
	$(PY) -m onnxcam inspect $(INSPECT_MODELS)/efficientnet_lite0.onnx --dataset demo-photos --k 4 \
		--steps 150 --learning-rate 20 --blur-every 4 --blur-sigma 1 --out $(INSPECT)/efficientnet_lite0

# ~16 min on 2 idle cores with the models exported, ~22-25 min on a fresh checkout
# (`python -m benchmarks.estimate` prints the estimate of the plan first);
# BENCH_FULL=1 runs every row of every suite in benchmarks/ (hours); BENCH_THREADS=N (default 2).
# Missed CPU timing goals are profiled last (reports/bench/profile_<row>.md). docs/benchmarks.md
BENCH_SUITES := $(if $(filter-out 0,$(BENCH_FULL)),benchmarks,benchmarks/test_bench.py benchmarks/test_faithfulness.py)

bench: $(STAMP) $(OPENVINO_XAI_STAMP)
	mkdir -p reports/bench
	rm -f reports/bench/profile_*.md
	$(PY) -m benchmarks.estimate
	$(PY) -m pytest $(BENCH_SUITES) -q -p no:cacheprovider --benchmark-json=reports/bench/bench.json \
		--benchmark-columns=median,rounds --benchmark-sort=name
	$(if $(filter-out 0,$(BENCH_FULL)),,$(PY) -m pytest benchmarks/test_openvino_xai.py -q -p no:cacheprovider)
	$(PY) -m benchmarks.profile reports/bench/bench.json
	$(PY) -m benchmarks.report reports/bench/bench.json --out reports/bench

clean:
	rm -rf $(VENV) $(OPENVINO_XAI_VENV) reports .pytest_cache .benchmarks
