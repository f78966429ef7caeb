"""Does an open console cost the camera frames? ``python -m roadside.demo.console_bench``

Runs the demo's edge service (its built-in configuration on the shared intersection clip, real time) and
measures the frames it processes per second over windows of ``--window-s`` seconds, alternately with no
console open and with ``--pages`` consoles open in headless Chromium (Debian's chromium through Playwright;
each page refreshes every 2 s as an operator's would; with ``--http-only``, threads that make the page's
requests without a browser: the box's side of a console opened on an operator's laptop), ``--pairs`` times (ABAB..., so that the host's drifting
load falls on both sides). Prints each window and the medians; the ratio with/without is the number.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request

from roadside.demo.runner import Demo, DemoOptions, _ready

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _frames(api: str) -> tuple[float, int]:
    with urllib.request.urlopen(f"{api}/api/status", timeout=5) as r:
        st = json.loads(r.read())
    return time.monotonic(), sum(c["frames_processed"] for c in st["cameras"].values())


def _window(api: str, seconds: float) -> float:
    t0, n0 = _frames(api)
    time.sleep(seconds)
    t1, n1 = _frames(api)
    return (n1 - n0) / (t1 - t0)


def _poll_like_a_page(api: str, stop: threading.Event) -> None:
    """What one open console asks of the box: its JSON and the snapshot, every 2 s."""
    while not stop.is_set():
        for path in ("/api/console", "/console/cameras/cam1/snapshot.jpg"):
            try:
                with urllib.request.urlopen(api + path, timeout=5) as r:
                    r.read()
            except OSError:
                pass
        stop.wait(2.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=3, help="consoles open at once (3)")
    ap.add_argument("--pairs", type=int, default=3, help="without/with pairs (3)")
    ap.add_argument("--window-s", type=float, default=20.0, help="seconds per window (20)")
    ap.add_argument("--warmup-s", type=float, default=15.0, help="seconds before the first window (15)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--model", help="model (default: the demo's)")
    ap.add_argument("--http-only", action="store_true", help="make the pages' requests without a browser (the browser "
                                                             "then costs this machine nothing)")
    args = ap.parse_args(argv)
    demo = Demo(DemoOptions(broker="auto", model=args.model, api_port=18099), out=sys.stderr)
    try:
        ctx = demo.prepare()
        api = ctx["api"]
        demo._spawn("edge", ["edge", "run", "--config", str(ctx["work"] / "edge.yaml")], ctx["work"])
        deadline = time.monotonic() + 180
        while not _ready(f"{api}/readyz"):
            demo._died(ctx["work"])
            if time.monotonic() > deadline:
                raise SystemExit("the edge service did not get ready in 180 s")
            time.sleep(0.5)
        time.sleep(args.warmup_s)
        without, with_ = [], []
        if args.http_only:
            for i in range(args.pairs):
                without.append(_window(api, args.window_s))
                print(f"pair {i + 1}: no console        {without[-1]:6.2f} frames/s", flush=True)
                stop = threading.Event()
                pollers = [threading.Thread(target=_poll_like_a_page, args=(api, stop), daemon=True)
                           for _ in range(args.pages)]
                for t in pollers:
                    t.start()
                with_.append(_window(api, args.window_s))
                stop.set()
                for t in pollers:
                    t.join(10)
                print(f"pair {i + 1}: {args.pages} consoles (HTTP) {with_[-1]:6.2f} frames/s", flush=True)
        else:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
                for i in range(args.pairs):
                    without.append(_window(api, args.window_s))
                    print(f"pair {i + 1}: no console        {without[-1]:6.2f} frames/s", flush=True)
                    pages = [browser.new_page() for _ in range(args.pages)]
                    for p in pages:
                        p.goto(f"{api}/")
                    time.sleep(3)  # the pages' first loads
                    with_.append(_window(api, args.window_s))
                    print(f"pair {i + 1}: {args.pages} consoles open {with_[-1]:6.2f} frames/s", flush=True)
                    for p in pages:
                        p.close()
                    time.sleep(2)
                browser.close()
        a, b = statistics.median(without), statistics.median(with_)
        ratios = [w / o for o, w in zip(without, with_) if o > 0]
        print(f"median without {a:.2f} frames/s, with {args.pages} consoles {b:.2f} frames/s; "
              f"median paired ratio {statistics.median(ratios):.3f}")
    finally:
        demo.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
