"""The search app served for real (docs/search.md, "The app"): a headless chromium driven by Playwright uses the page
as a person would, 16 queries sent at once through ``gradio_client`` each get the answer they get alone, no file of
the machine is served, and the command line's mistakes are one line with exit status 2. The search itself is
tested in test_app_results.py: these tests prove the wiring."""

from __future__ import annotations

import gc
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("gradio", reason="the search app needs the [app] extra: pip install -e '.[app]'")

from peft_puma.search.app import ALL_COLLECTIONS, build_app, free_port, launch  # noqa: E402
from peft_puma.search.cli import main  # noqa: E402
from search.conftest import error_line  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CAPTION = re.compile(r"^(?:[✓✗] )?-?\d\.\d{3} · label \d+ · (?:colours|shop|stripes)$")
SCREENSHOT = (
    "PEFT_PUMA_APP_SCREENSHOT"  # where the browser test also saves its screenshot (docs/figures/search_app.png)
)


@pytest.fixture(scope="module")
def zero_shot_index(tiny, tmp_path_factory) -> str:
    output = str(tmp_path_factory.mktemp("app_page") / "zero_shot")
    argv = ["index", "--zero_shot", "--backbone", tiny["backbone"], "--dataset", tiny["dataset"], "--split", "test"]
    assert main([*argv, "--output_dir", output]) == 0
    return output


@pytest.fixture(scope="module")
def server(test_index, zero_shot_index) -> str:
    """The app of the tiny test split, the zero-shot index beside it, served on a free local port."""
    app = build_app(test_index, zero_shot_index)
    yield serve(app)
    app.close()


def serve(app) -> str:
    """Serve ``app`` on a free local port; its URL. Gradio gives a server 5 s to start: on cores busy with other
    jobs that can pass, so a start is tried three times, each on a fresh port."""
    for attempt in range(3):
        port = free_port("127.0.0.1")
        try:
            launch(app, "127.0.0.1", port, block=False)
            return f"http://127.0.0.1:{port}/"
        except OSError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _photo(photos: str, collection: str, number: int = 0) -> str:
    folder = os.path.join(photos, collection)
    return os.path.join(folder, sorted(os.listdir(folder))[number])


# ------------------------------------------------------------------------------------------------------- the browser
def test_a_real_browser_queries_by_upload_changes_k_filters_clicks_and_sees_errors(server, photos, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]' installs playwright")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no {CHROMIUM}: apt-get update && apt-get install -y chromium")
    text_file, fake_png = tmp_path / "notes.txt", tmp_path / "broken.png"
    text_file.write_text("not an image")
    fake_png.write_text("not an image either")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(server)
            captions = page.locator("#results .caption-label")

            def wait_for(count: int, check=lambda texts: True) -> list[str]:
                page.wait_for_function(
                    "count => document.querySelectorAll('#results .caption-label').length === count", arg=count
                )
                deadline = time.monotonic() + 30
                while not check(texts := captions.all_inner_texts()) and time.monotonic() < deadline:
                    page.wait_for_timeout(100)
                assert check(texts), texts
                return texts

            page.set_input_files("#query input[type=file]", _photo(photos, "colours"))
            texts = wait_for(10)
            assert all(CAPTION.match(text) for text in texts), texts
            assert page.locator("#compare .caption-label").count() == 10  # the zero-shot model's, side by side
            assert "Query: upload. 10 nearest" in page.locator("#message").inner_text()

            k = page.locator("#k input[type=number]")
            k.fill("4")
            k.blur()  # the slider's number box sends its value on leaving it
            wait_for(4)

            page.locator("#collection input").click()
            page.get_by_role("option", name="shop").click()
            page.locator("#collection input").blur()
            wait_for(4, lambda texts: all(text.endswith("· shop") for text in texts))

            page.locator("#picks button.thumbnail-item").first.click()
            texts = wait_for(4, lambda texts: all(text[0] in "✓✗" for text in texts))
            message = page.locator("#message").inner_text()
            assert re.search(r"Query: gallery row \d+, label \d+ · colours\. 4 nearest in shop; 0 of 4", message)
            page.get_by_role("tab", name="colours").click()
            page.wait_for_function("() => document.querySelectorAll('#collection-0 .caption-label').length === 4")
            page.get_by_role("tab", name=ALL_COLLECTIONS).click()
            caption = page.locator("#results .caption-label").first
            assert caption.evaluate("node => getComputedStyle(node).whiteSpace") == "normal"  # wrapped, never cut
            assert caption.evaluate("node => node.scrollWidth <= node.clientWidth")
            screenshot = tmp_path / "search_app.png"
            page.screenshot(path=str(screenshot), full_page=True)
            if os.environ.get(SCREENSHOT):
                shutil.copyfile(screenshot, os.environ[SCREENSHOT])

            page.locator("#results button.thumbnail-item").nth(1).click()  # a result becomes the next query
            # the message passes through Gradio's progress text first: wait for the new query's own words
            page.wait_for_function(
                "() => /gallery row \\d+, label \\d+ · shop\\. 4 nearest in shop/"
                ".test(document.querySelector('#message').innerText)"
            )

            page.set_input_files("#query input[type=file]", str(text_file))  # refused by the page itself
            page.get_by_text(re.compile(r"Invalid file type: notes\.txt")).first.wait_for()
            page.set_input_files("#query input[type=file]", str(fake_png))  # an image's name: refused by the app
            page.get_by_text("broken.png is not an image this app can read").first.wait_for()
        finally:
            browser.close()


# --------------------------------------------------------------------------------------------------- under load
def test_sixteen_queries_at_once_each_get_their_answer_alone_and_memory_settles(server, photos):
    from gradio_client import Client, handle_file

    files = [_photo(photos, collection, number) for collection in ("colours", "shop", "stripes") for number in range(6)]
    files = files[:16]
    client = Client(server, verbose=False)

    def ask(path: str) -> list[str]:
        message, results, compare, *per_collection = client.predict(
            handle_file(path), 5, ALL_COLLECTIONS, api_name="/search"
        )
        return [item["caption"] for item in results + compare]

    alone = [ask(path) for path in files]
    assert all(len(captions) == 10 for captions in alone)
    with ThreadPoolExecutor(16) as pool:
        at_once = list(pool.map(ask, files))
    gc.collect()
    settled = _resident_mb()
    with ThreadPoolExecutor(16) as pool:
        again = list(pool.map(ask, files))
    gc.collect()
    assert at_once == alone and again == alone  # none lost, none mixed up
    assert _resident_mb() - settled < 40, "the server's memory grew by a second round of the same 16 queries"


def _resident_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def test_a_text_file_sent_as_query_is_a_clear_error(server, tmp_path):
    from gradio_client import Client, handle_file

    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    with pytest.raises(Exception, match=r"notes\.txt is not an image this app can read"):
        Client(server, verbose=False).predict(handle_file(str(text_file)), 5, ALL_COLLECTIONS, api_name="/search")


# ------------------------------------------------------------------------------------------------------- safety
def test_no_file_of_the_machine_is_served_not_even_the_gallery_originals(server, photos, test_index, tmp_path):
    from gradio_client import Client, handle_file

    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    for path in (str(secret), _photo(photos, "shop"), os.path.join(test_index, "peft_puma_index.json"), __file__):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server}gradio_api/file={path}")
        assert refused.value.code in (403, 404), path
    _, results, *_ = Client(server, verbose=False).predict(
        handle_file(_photo(photos, "shop")), 2, ALL_COLLECTIONS, api_name="/search"
    )
    assert len(results) == 2  # the thumbnails it made were served (gradio_client downloaded them)


# --------------------------------------------------------------------------------------------------- command line
def test_the_command_prints_its_url_warns_off_localhost_and_serves_the_page(test_index):
    port = free_port("127.0.0.1")
    command = [sys.executable, "-m", "peft_puma.search", "app", "--index", test_index, "--host", "0.0.0.0"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == f"search app of {test_index} at http://0.0.0.0:{port}/ (Ctrl-C stops it)"
        deadline = time.monotonic() + 60
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/").read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
                time.sleep(0.2)
        assert "PUMA image search" in page
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "warning: listening on 0.0.0.0: anyone on that network can query this index" in err


def test_a_missing_index_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["app", "--index", str(tmp_path / "nowhere")]) == 2
    assert "does not exist; build it with the index sub-command" in error_line(capsys.readouterr().err)


def test_an_index_of_another_adapter_is_one_line_and_exit_2(test_index, run_copy, capsys):
    with open(os.path.join(run_copy, "adapter_model.safetensors"), "ab") as handle:
        handle.write(b"\0")
    assert main(["app", "--index", test_index, "--adapter", run_copy]) == 2
    assert "is not the adapter this index was built with" in error_line(capsys.readouterr().err)


def test_a_port_in_use_is_one_line_and_exit_2(test_index, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", "--index", test_index, "--port", str(port)]) == 2
    assert f"Cannot listen on 127.0.0.1:{port}" in error_line(capsys.readouterr().err)


def test_without_gradio_the_command_names_the_extra(test_index, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now fails
    monkeypatch.delitem(sys.modules, "peft_puma.search.app")
    assert main(["app", "--index", test_index]) == 2
    assert "pip install 'peft_puma[app]'" in error_line(capsys.readouterr().err)
