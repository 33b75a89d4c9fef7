# Every target sets itself up: the first run creates .venv and installs the tested versions.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-all demo bench report clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m pip install --quiet -c constraints.txt --no-deps grad-cam ttach
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

demo: $(STAMP)
	$(PY) -m onnxcam demo --out reports/demo

# The localization report (issue 5): export the committed synthetic models and EfficientNet-Lite0
# CAM-ready, evaluate every method and weighting, write reports/localization/report.{md,html}.
# Reruns resume: finished per-image result files are kept.
REPORT := reports/localization
REPORT_MODELS := $(REPORT)/models
METHOD_BUDGET ?= 60

$(REPORT_MODELS)/%.onnx: models/synthetic/%.pt $(STAMP)
	$(PY) -m onnxcam export-synthetic $< --out $@

$(REPORT_MODELS)/efficientnet_lite0.onnx: $(STAMP)
	$(PY) -m onnxcam export --arch efficientnet_lite0 --out $@

report: $(REPORT_MODELS)/synthetic_resnet.onnx $(REPORT_MODELS)/synthetic_vgg.onnx $(REPORT_MODELS)/efficientnet_lite0.onnx
	$(PY) -m onnxcam eval $(REPORT_MODELS)/synthetic_resnet.onnx $(REPORT_MODELS)/synthetic_vgg.onnx \
		--dataset synthetic --images 2000 --method-budget $(METHOD_BUDGET) --out $(REPORT) --no-report
	$(PY) -m onnxcam eval $(REPORT_MODELS)/efficientnet_lite0.onnx --dataset demo-photos --chunk 1 --method-budget $(METHOD_BUDGET) --out $(REPORT)

# ~15 min on 2 cores; BENCH_FULL=1 runs every row (hours); BENCH_THREADS=N (default 2). docs/benchmarks.md
bench: $(STAMP)
	mkdir -p reports/bench
	$(PY) -m pytest benchmarks -q -p no:cacheprovider --benchmark-json=reports/bench/bench.json \
		--benchmark-columns=median,rounds --benchmark-sort=name
	$(PY) -m benchmarks.report reports/bench/bench.json --out reports/bench

clean:
	rm -rf $(VENV) reports .pytest_cache .benchmarks
