"""The on-device page (edge/web, ``make web``) in a real headless Chromium: the int8 fused
EfficientNet-Lite0 in onnxruntime-web gives Python's labels and maps for the demo photos, and a
dropped photo gets its maps at its own size."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers.torch_reference import cosine

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(__file__).resolve().parents[2] / "reports" / "web" / "screenshot.png"

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
]


@pytest.fixture(scope="module")
def page_url(edge_zoo_model, tmp_path_factory):
    pytest.importorskip("playwright")
    from onnxcam.apps.web import ORT_DIST, serve_folder, write_web_folder

    if not (ORT_DIST / "ort.all.min.mjs").is_file():
        pytest.skip("onnxruntime-web is not installed: make edge-install (node and npm)")
    folder = write_web_folder(edge_zoo_model("efficientnet_lite0", "int8"), tmp_path_factory.mktemp("web"))
    with serve_folder(folder) as url:
        yield url


@pytest.fixture(scope="module")
def page(page_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_url)
        page.wait_for_selector("body[data-ready]", timeout=120_000)
        assert page.evaluate("document.body.dataset.ready") == "true", page.inner_text("#status")
        yield page
        browser.close()


def test_page_gives_pythons_labels_and_maps_for_the_demo_photos(page, edge_zoo_model):
    from onnxcam.eval.datasets.demo_photos import demo_photo_images
    from onnxcam.runtime import CamSession
    from onnxcam.runtime.class_scores import softmax
    from onnxcam.runtime.inputs import preprocess_images

    session = CamSession(edge_zoo_model("efficientnet_lite0", "int8"), providers="cpu")
    _, photos = demo_photo_images()
    for photo in photos:
        batch = preprocess_images([photo], session.metadata.preprocessing)
        js = page.evaluate("([data, dims]) => onnxcam.explainTensor(data, dims)", [batch.ravel().tolist(), list(batch.shape)])
        results = session.explain_weightings(batch, "gradcam", ["relu", "abs"])
        probabilities = softmax(results["relu"].logits)[0]
        python_top = np.argsort(-probabilities, kind="stable")[:3]
        assert [c["index"] for c in js["top"]] == python_top.tolist()
        assert [c["label"] for c in js["top"]] == [session.metadata.class_labels[i] for i in python_top]
        np.testing.assert_allclose([c["probability"] for c in js["top"]], probabilities[python_top], rtol=1e-4)
        for weighting in ("relu", "abs"):
            assert cosine(np.array(js["maps"][weighting]), results[weighting].maps[0].ravel()) >= 0.999


def test_a_dropped_photo_gets_maps_at_its_size(page):
    from onnxcam.eval.datasets.demo_photos import skimage_data_dir

    photo = skimage_data_dir() / "chelsea.png"
    data = base64.b64encode(photo.read_bytes()).decode()
    page.evaluate(
        """async (data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "chelsea.png", { type: "image/png" }));
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
        }""",
        data,
    )
    page.wait_for_selector("body[data-explained='chelsea.png']", timeout=60_000)
    from PIL import Image

    width, height = Image.open(photo).size
    for weighting in ("relu", "abs"):
        size = page.evaluate(f"[document.getElementById('map-{weighting}').width, document.getElementById('map-{weighting}').height]")
        assert size == [width, height]
    assert "cat" in page.inner_text("#labels")
    assert "model (forward + gradients + both maps)" in page.inner_text("#timings")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
