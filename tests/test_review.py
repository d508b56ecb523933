"""The review page: self-contained, and in a real browser its counts, reason groups and
threshold slider agree with the manifest."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from click.testing import CliRunner

from facegate.cli import main
from facegate.errors import ConfigError
from facegate.review import accepted_at, load_run, write_review
from tests.review_run import browser_missing, build_run, open_browser


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory, fixtures):
    root = tmp_path_factory.mktemp("review")
    src = root / "src" / "colin"
    src.mkdir(parents=True)
    for photo in fixtures.glob("*.jpg"):
        (src / photo.name).write_bytes(photo.read_bytes())
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    run = CliRunner().invoke(main, ["filter", str(root / "src"), "--accepted", str(root / "acc"), "--rejected",
                                    str(root / "rej"), "--views", "none"])
    assert run.exit_code in (0, 1), run.output
    (src / "tony_blair_1.jpg").unlink()  # gone since the run
    return root


def test_the_page_is_one_self_contained_file(fixture_run):
    out = fixture_run / "review.html"
    run = CliRunner().invoke(main, ["report", str(fixture_run / "facegate-manifest.jsonl"), "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert "2 originals missing or unreadable" in run.output  # the deleted one and the corrupt one
    page = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched from elsewhere
    assert "<link" not in page and "<script src" not in page and "@import" not in page
    assert page.count("data:image/jpeg;base64,") >= 4
    # run again: it replaces its own page, but never someone else's file
    assert CliRunner().invoke(main, ["report", str(fixture_run / "facegate-manifest.jsonl"), "--out",
                                     str(out)]).exit_code == 0
    other = fixture_run / "notes.html"
    other.write_text("<html>mine</html>")
    with pytest.raises(ConfigError, match="not a facegate review page"):
        write_review(fixture_run / "facegate-manifest.jsonl", other)
    assert other.read_text() == "<html>mine</html>"


def test_accepted_at_counts_what_a_threshold_would_accept(fixture_run):
    records = load_run(fixture_run / "facegate-manifest.jsonl")
    run_threshold = records[0]["policy"]["min_score"]
    assert accepted_at(records, run_threshold) == sum(r["status"] == "accepted" for r in records)
    assert accepted_at(records, 0.0) >= accepted_at(records, run_threshold) >= accepted_at(records, 100.0) == 0


@pytest.mark.skipif(browser_missing() is not None, reason=f"needs a headless browser: {browser_missing()}")
def test_the_page_in_headless_chromium_agrees_with_the_manifest(shared, tmp_path):
    manifest = build_run(shared, tmp_path)
    page = tmp_path / "review.html"
    write_review(manifest, page, page_size=1000)  # every card on the first page
    records = load_run(manifest)
    try:
        browser = open_browser()
    except Exception as exc:  # installed but unable to start here (missing libraries, no /dev/shm, ...)
        pytest.skip(f"headless Chromium would not start: {exc}")
    try:
        browser.get(page.as_uri())
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors

        def table(css):
            rows = browser.find_elements("css selector", f"{css} tr[data-key]")
            return {r.get_attribute("data-key"): int(r.find_elements("css selector", "td")[1].text) for r in rows}

        assert table("#status-counts") == dict(Counter(r["status"] for r in records))
        assert table("#reason-counts") == dict(Counter(x for r in records for x in r["reasons"]))
        for k, record in enumerate(records):
            for reason in record["reasons"]:
                cards = browser.find_elements("css selector", f'.reason[data-reason="{reason}"] .card[data-id="{k}"]')
                assert len(cards) == 1, (record["file"], reason)
        accepted = browser.find_elements("css selector", "#accepted-grid .card")
        assert len(accepted) == sum(r["status"] == "accepted" for r in records)
        assert browser.find_elements("css selector", ".noimg"), "the deleted original is shown as missing"
        # a long name keeps its end (the file number) in view; placeholder text stays inside its card
        names = json.loads(browser.execute_script(
            "return JSON.stringify(Array.from(document.querySelectorAll('.card .name')).map(e => [e.textContent, e.title]))"))
        assert names
        for shown, full in names:
            assert shown == full or (shown.endswith(full[-14:]) and "\u2026" in shown), (shown, full)
        overflowing = json.loads(browser.execute_script(
            "return JSON.stringify(Array.from(document.querySelectorAll('.card .noimg, .card'))"
            ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent.slice(0, 60)))"))
        assert not overflowing, overflowing

        slider_count = lambda: int(browser.find_element("id", "accepted-at-threshold").text)  # noqa: E731
        run_threshold = records[0]["policy"]["min_score"]
        assert slider_count() == sum(r["status"] == "accepted" for r in records)
        for threshold in (0.0, 20.0, run_threshold + 10.0, 80.0):
            browser.execute_script("const s = document.getElementById('slider'); s.value = arguments[0];"
                                   "s.dispatchEvent(new Event('input'));", threshold)
            assert slider_count() == accepted_at(records, threshold), threshold
        people = {r["file"].split("/")[0] for r in records if "/" in r["file"]}
        without = {p for p in people if not any(r["status"] == "accepted" and r["file"].startswith(p + "/")
                                                for r in records)}
        assert int(browser.find_element("id", "people-without").text) == len(without)
    finally:
        browser.quit()
