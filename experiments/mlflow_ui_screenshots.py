"""Screenshots of the MLflow UI on a tiny sweep: the run list and the chart (compare) view with the headline
``summary/`` metrics, as the README tells a user to open them.

    python experiments/mlflow_ui_screenshots.py                 # tiny 3-seed sweep in a temp store, PNGs to docs/
    python experiments/mlflow_ui_screenshots.py --store /tmp/s  # reuse (or create) a store there

Needs a Chromium binary (Debian: ``apt-get install chromium``); it runs headless against ``mlflow server`` on
127.0.0.1, driven over the DevTools protocol (with aiohttp, which MLflow installs) so that it can close the
assistant panel MLflow opens on a first visit and expand the sweep's parent run before each screenshot. The
sweep is the main job at tiny sizes (a few minutes on a laptop): the point is the UI, not the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "ai_trading"
TINY = ["data.symbols=[SP500,NVDA]", "data.start=2005-01-01", "data.end=2012-12-31", "algo.progress_bar=false",
        "algo.eval_every=0", "algo.n_envs=8", "algo.total_timesteps=2048", "algo.hyperparams.n_steps=64",
        "algo.hyperparams.batch_size=256"]
VIEW = "viewStateShareKey=headline&workflowType=machine_learning"  # see README.md, "MLflow"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sweep(store: Path, seeds: int) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}", "PYTHONPATH": str(ROOT)}
    seed_list = ",".join(str(s) for s in range(seeds))
    subprocess.run([sys.executable, "-m", "ai_trading.train", "-m", f"seed={seed_list}", *TINY], cwd=store, env=env,
                   check=True)


def _get(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _wait(base: str, server: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return
        except OSError:
            time.sleep(1.0)
    raise TimeoutError(f"mlflow server at {base} did not answer within {timeout:.0f}s")


# The expand button of a parent run's name (the run list and the chart view's list share it), and the run links.
_EXPAND = 'button[data-component-id$="runnamecellrenderer.tsx_46"]'
_RUN_LINKS = "document.querySelectorAll('a[href*=\"/runs/\"]').length"
_LOADED = f"document.body.innerText.includes('matching runs') && document.querySelectorAll('{_EXPAND}').length > 0"
_SETTLED = (f"{_RUN_LINKS} > 1 && document.querySelectorAll("
            "'[class*=spin], [class*=Spin], [class*=skeleton], [class*=Skeleton]').length == 0")
# Run in the page before each screenshot: close the assistant panel and the shared-view banner, expand the
# sweep's parent run if it is collapsed (only its own link shows).
_TIDY = f"""
for (const label of ['Close', 'Hide banner']) {{
  document.querySelectorAll(`button[aria-label="${{label}}"]`).forEach(b => b.click());
}}
if ({_RUN_LINKS} == 1) {{
  document.querySelectorAll('{_EXPAND}').forEach(b => b.click());
}}
"""


class _Page:
    """One Chromium tab over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: object) -> dict:  # type: ignore[type-arg]
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]  # type: ignore[no-any-return]

    async def until(self, condition: str, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = await self.call("Runtime.evaluate", expression=condition, returnByValue=True)
            if result["result"].get("value") is True:
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the page did not reach {condition!r} within {timeout:.0f}s")


async def _shoot(chromium: str, shots: list[tuple[str, Path, int, int]]) -> None:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="chromium_profile_") as profile:
        browser = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                    f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    targets = _get(f"http://127.0.0.1:{port}/json/list")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")  # type: ignore[union-attr]
            async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
                page = _Page(ws)
                for url, path, width, height in shots:
                    await page.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                                    deviceScaleFactor=1, mobile=False)
                    await page.call("Page.navigate", url=url)
                    # The single-page app fetches runs and metrics after load; then the parent expands.
                    try:
                        await page.until(_LOADED)
                    except TimeoutError:
                        shot = await page.call("Page.captureScreenshot", format="png")
                        path.with_suffix(".timeout.png").write_bytes(base64.b64decode(shot["data"]))
                        raise
                    await page.call("Runtime.evaluate", expression=_TIDY)
                    await page.until(_SETTLED)
                    await asyncio.sleep(2)
                    shot = await page.call("Page.captureScreenshot", format="png")
                    path.write_bytes(base64.b64decode(shot["data"]))
                    print(f"wrote {path}  <- {url}")
        finally:
            browser.terminate()
            browser.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="folder of the MLflow store (a tiny sweep runs if it has none)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "")
    args = parser.parse_args()
    if not args.chromium:
        raise SystemExit("no chromium binary found (Debian: apt-get install chromium); pass --chromium PATH")
    store = args.store or Path(tempfile.mkdtemp(prefix="mlflow_ui_"))
    store.mkdir(parents=True, exist_ok=True)
    if not (store / "mlflow.db").exists():
        _sweep(store, args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--workers", "1"],
                              cwd=store, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(base, server)
        query = urllib.parse.urlencode({"experiment_name": EXPERIMENT})
        experiment = _get(f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}")["experiment"]
        runs_page = f"{base}/#/experiments/{experiment['experiment_id']}/runs?{VIEW}"
        charts = f"{runs_page}&compareRunsMode=CHART"
        asyncio.run(_shoot(args.chromium, [(runs_page, args.out / "mlflow_run_list.png", 1800, 520),
                                           (charts, args.out / "mlflow_compare_charts.png", 1800, 1000)]))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
