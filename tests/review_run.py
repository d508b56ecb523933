"""A small real enrollment run for the review page, and a headless browser to look at it.

tests/test_review.py renders this run's page in Debian's Chromium. The screenshot in the
docs comes from the same run:

    python -m tests.review_run --shared ../shared --screenshot docs/review.png
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import cv2

from facegate import Gate
from facegate.folder import plan_filter, run_filter
from facegate.images import apply_gamma, load_rgb

from .bad_inputs import make_bad_inputs

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def browser_missing() -> str | None:
    """Why no headless browser can be started here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (Debian: apt-get install chromium chromium-driver)"
    return None


def open_browser(width: int = 1300, height: int = 1800, extra_args: tuple[str, ...] = ()):
    """Debian's Chromium, headless, driven by its own ChromeDriver (nothing downloaded);
    ``extra_args`` adds switches (a fake camera, say)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--window-size={width},{height}", *extra_args):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def build_run(shared: Path, root: Path, people: int = 8, per_person: int = 3) -> Path:
    """LFW evaluation people (folds 1-5) with ``per_person`` photos each; for every other
    person one photo also as a blurred, darkened, turned or cropped copy; a few broken
    files; one original deleted after filtering (the page must show it as missing).
    Filtered with the default gate into ``root``; returns the manifest."""
    from train.lfw import evaluation_people

    lfw = shared / "data" / "lfw-deepfunneled"
    chosen = [p for p in sorted(evaluation_people(shared)) if len(list((lfw / p).glob("*.jpg"))) >= per_person]
    src = root / "src"
    degrade = [("blurred", lambda rgb: cv2.GaussianBlur(rgb, (0, 0), 5)),
               ("dark", lambda rgb: apply_gamma(rgb, 4.0, 0.5)),
               ("turned", lambda rgb: cv2.rotate(rgb, cv2.ROTATE_90_CLOCKWISE)),
               ("cropped", lambda rgb: rgb[: rgb.shape[0] * 3 // 5])]
    for k, person in enumerate(chosen[:people]):
        (src / person).mkdir(parents=True)
        photos = sorted((lfw / person).glob("*.jpg"))[:per_person]
        for photo in photos:
            shutil.copy(photo, src / person / photo.name)
        if k % 2 == 0:
            name, fn = degrade[(k // 2) % len(degrade)]
            rgb = fn(load_rgb(photos[0]))
            cv2.imwrite(str(src / person / f"{photos[0].stem}_{name}.jpg"), rgb[..., ::-1])
    make_bad_inputs(src / "bad")
    gate = Gate(views="none")
    plan = plan_filter(src, root / "accepted", root / "rejected", root / "manifest.jsonl", gate.settings())
    run_filter(gate, plan)
    next(iter(sorted((src / chosen[1]).glob("*.jpg")))).unlink()  # an original gone since the run
    return root / "manifest.jsonl"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--screenshot", type=Path, required=True)
    args = parser.parse_args(argv)
    from facegate.review import write_review

    with tempfile.TemporaryDirectory() as tmp:
        manifest = build_run(args.shared, Path(tmp))
        page = Path(tmp) / "review.html"
        write_review(manifest, page, page_size=12)
        browser = open_browser(1300, 2200)
        try:
            browser.get(page.as_uri())
            browser.save_screenshot(str(args.screenshot))
        finally:
            browser.quit()
    print(f"wrote {args.screenshot}")


if __name__ == "__main__":
    main()
