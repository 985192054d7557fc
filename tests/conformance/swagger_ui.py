"""Swagger UI, for real: headless Chromium (Debian's) opens /docs/, checks that every operation of
openapi.yaml is listed, runs "Try it out" -> "Execute" on GET /api/movies and sees a 200.
Saves a screenshot for people to look at. Usage: swagger_ui.py BASE_URL SCREENSHOT.png"""

import sys
from pathlib import Path

import yaml
from playwright.sync_api import expect, sync_playwright

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def main(base_url: str, screenshot: str) -> int:
    spec = yaml.safe_load((Path(__file__).parents[2] / "openapi.yaml").read_text())
    operations = [(m.upper(), p) for p, item in spec["paths"].items() for m in METHODS if m in item]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 2200})
        # Only the gateway is reachable: anything else the page asks for fails the check.
        outside = []
        page.on("request", lambda r: None if r.url.startswith(base_url) or r.url.startswith("data:") else outside.append(r.url))
        page.goto(f"{base_url}/docs/", wait_until="networkidle")
        # The page fetches the spec only once its 1.5 MB script has run, which on a loaded
        # machine can come after the network has been idle for a while: wait for what it renders.
        page.locator(".opblock").first.wait_for(timeout=30_000)

        listed = set()
        for block in page.locator(".opblock").all():
            method = block.locator(".opblock-summary-method").inner_text().strip()
            path = block.locator(".opblock-summary-path").get_attribute("data-path")
            listed.add((method, path))
        missing = [op for op in operations if op not in listed]
        if missing:
            print(f"swagger-ui: operations not listed: {missing}")
            return 1
        print(f"swagger-ui: all {len(operations)} operations listed")

        block = page.locator("#operations-movies-listMovies")
        block.locator(".opblock-summary").click()
        block.get_by_role("button", name="Try it out").click()
        block.get_by_role("button", name="Execute").click()
        status = block.locator(".live-responses-table tr.response .response-col_status").first
        expect(status).to_have_text("200", timeout=10_000)
        print("swagger-ui: Try it out -> Execute on GET /api/movies answered 200")

        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=screenshot, full_page=False)
        print(f"swagger-ui: screenshot saved to {screenshot}")
        browser.close()
        if outside:
            print(f"swagger-ui: the page reached outside the gateway: {outside}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
