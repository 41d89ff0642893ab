"""Checks of the built documentation site, for the docs stage (.ci/docs.sh).

    python .ci/docs_site_check.py scan HTML_DIR
    python .ci/docs_site_check.py render HTML_DIR SHOTS_DIR [--chromium PATH]

``scan``: no built page loads anything from the network. Every HTML file is parsed and
every address a browser would fetch on its own (script and iframe ``src``, stylesheet,
icon, preload and font ``link``\\s, images and media, ``url()``/``@import`` in styles) must
be local; every CSS file likewise. In JavaScript an address cannot be told from a link
by reading it, so any string that names a fetchable file (``.js``, ``.css``, a font, an
image, ``.json``, ``.wasm``) or a CDN host fails, except the few fallbacks listed in
``JS_FALLBACKS``, each of which is said below never to be fetched by these pages (and
``render`` checks that none was). Links a reader clicks (``<a href>``) are fine.

``render``: headless Chromium with every host name mapped to nothing (so the pages have
no network at all) opens every page of the site in turn inside a harness page, waits for
MathJax, and reports per page: the number of typeset formulas, any TeX left as raw text
outside code (e.g. ``\\frac``), and any element that scrolls or spills sideways at a
1280-pixel window (the page, a code block, a table or its container, a figure). It
fails on raw TeX, on a page with math and no typeset formula, on sideways overflow, and
on any request Chromium's network log shows for an http(s) address. It then takes
screenshots of the theory page and the front page into SHOTS_DIR.
"""

from __future__ import annotations

import argparse
import html.parser
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

REMOTE = re.compile(r"^\s*(?:https?:)?//", re.I)
CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)|@import\s+(['"])([^'"]+)\3""", re.I)
JS_REMOTE = re.compile(r"""["'`](https?://[^"'`\s]*)""", re.I)
FETCHABLE = re.compile(r"\.(?:m?js|css|woff2?|ttf|otf|eot|png|jpe?g|gif|svg|webp|ico|json|wasm)"
                       r"(?:[?#].*)?$", re.I)
CDN_HOSTS = re.compile(r"//(?:[^/]*\.)?(?:cdn\.|cdnjs|unpkg|jsdelivr|googleapis|gstatic|"
                       r"cloudflare|githack|gitcdn|statically|jquery\.com|bootstrapcdn|"
                       r"fontawesome|polyfill\.io|api\.github\.com)", re.I)

# (path prefix within the site, address prefix): addresses inside MathJax's JavaScript
# that these pages never fetch.
JS_FALLBACKS: Tuple[Tuple[str, str], ...] = (
    # the speech-rule engine's own default for its maps; MathJax points it at its copy,
    # "[mathjax]/sre/mathmaps", which is in _static/mathjax/sre/mathmaps
    ("_static/mathjax/", "https://cdn.jsdelivr.net/npm/speech-rule-engine@"),
    # Internet Explorer only: its maps, and an XPath polyfill for browsers without one
    ("_static/mathjax/", "https://cdn.jsdelivr.net/npm/sre-mathmaps-ie@"),
    ("_static/mathjax/", "https://cdn.jsdelivr.net/npm/wicked-good-xpath@"),
    # latest.js looks the newest MathJax up on CDNs; no page loads latest.js
    ("_static/mathjax/latest.js", "https://"),
)

# <tag attribute> pairs a browser fetches by itself; link elements by their rel.
FETCHED = {("script", "src"), ("img", "src"), ("img", "srcset"), ("iframe", "src"),
           ("source", "src"), ("source", "srcset"), ("video", "src"), ("video", "poster"),
           ("audio", "src"), ("embed", "src"), ("object", "data"), ("track", "src"),
           ("input", "src"), ("image", "href"), ("use", "href"), ("image", "xlink:href")}
LINK_FETCHED = {"stylesheet", "preload", "prefetch", "modulepreload", "icon", "shortcut",
                "apple-touch-icon", "manifest", "preconnect", "dns-prefetch", "mask-icon"}


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.fetched: List[str] = []
        self.styles: List[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        for name, value in a.items():
            if (tag, name) in FETCHED:
                self.fetched += [u.strip().split(" ")[0] for u in value.split(",")] \
                    if name == "srcset" else [value]
        if tag == "link" and set(a.get("rel", "").lower().split()) & LINK_FETCHED:
            self.fetched.append(a.get("href", ""))
        if "style" in a:
            self.styles.append(a["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def _css_remote(text: str) -> List[str]:
    out = []
    for m in CSS_URL.finditer(text):
        url = m.group(2) or m.group(4) or ""
        if REMOTE.match(url):
            out.append(url)
    return out


def scan(site: str) -> List[str]:
    """Every address a built page would fetch from the network, as 'file: address'."""
    problems = []
    counts = {"html": 0, "css": 0, "js": 0}
    for folder, _, files in os.walk(site):
        for name in files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, site).replace(os.sep, "/")
            ext = name.rsplit(".", 1)[-1].lower()
            if ext not in ("html", "htm", "css", "js", "mjs"):
                continue
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
            if ext in ("html", "htm"):
                counts["html"] += 1
                page = _Page()
                page.feed(text)
                found = [u for u in page.fetched if REMOTE.match(u)]
                for style in page.styles:
                    found += _css_remote(style)
            elif ext == "css":
                counts["css"] += 1
                found = _css_remote(text)
            else:
                counts["js"] += 1
                found = [u for u in JS_REMOTE.findall(text)
                         if (FETCHABLE.search(u) or CDN_HOSTS.search(u))
                         and not any(rel.startswith(where) and u.startswith(prefix)
                                     for where, prefix in JS_FALLBACKS)]
            problems += [f"{rel}: {u}" for u in sorted(set(found))]
    print(f"scanned {counts['html']} HTML, {counts['css']} CSS and {counts['js']} JavaScript "
          f"files for addresses fetched from the network: {len(problems)} found")
    if counts["html"] == 0:
        problems.append(f"{site}: no HTML page at all")
    return problems


# ----------------------------------------------------------------------------- render
HARNESS = r"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>docs check</title>
<style>body{margin:0} iframe{width:1280px;height:900px;border:0}</style></head>
<body><pre id="result">pending</pre><iframe id="f"></iframe>
<script>
const PAGES = __PAGES__;
const TEX = new RegExp("\\\\(frac|tfrac|dfrac|sqrt|eta|lambda|beta|mathrm|mathbf|text|" +
  "begin|left|right|operatorname|cdot|leq?|geq?|infty|sum|tag)\\b|\\\\\\(|\\\\\\[", "g");
const sleep = ms => new Promise(r => setTimeout(r, ms));
const what = e => `${e.tagName.toLowerCase()}.${e.className}`;
function load(frame, url) {
  return new Promise(resolve => { frame.onload = () => resolve(); frame.src = url; });
}
async function check(frame, page) {
  await load(frame, page);
  const win = frame.contentWindow, doc = frame.contentDocument;
  const report = {page: page, math_sources: 0, typeset: 0, raw_tex: [], overflow: []};
  report.math_sources = doc.querySelectorAll(".math, span.math, div.math").length;
  if (report.math_sources > 0) {
    for (let i = 0; i < 200 && !(win.MathJax && win.MathJax.startup &&
                                 win.MathJax.startup.promise); i++) await sleep(50);
    if (win.MathJax && win.MathJax.startup && win.MathJax.startup.promise) {
      await Promise.race([win.MathJax.startup.promise, sleep(20000)]);
    }
  }
  await sleep(100);
  report.typeset = doc.querySelectorAll("mjx-container").length;
  const body = doc.body.cloneNode(true);
  body.querySelectorAll("pre, code, script, style, mjx-container, textarea")
    .forEach(e => e.remove());
  const text = body.textContent;
  let m, re = new RegExp(TEX.source, "g");
  while ((m = re.exec(text)) !== null && report.raw_tex.length < 5) {
    report.raw_tex.push(text.slice(Math.max(0, m.index - 30), m.index + 30).replace(/\s+/g, " "));
  }
  const root = doc.scrollingElement || doc.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) {
    report.overflow.push(`the page: ${root.scrollWidth} > ${root.clientWidth} px`);
  }
  const wide = doc.querySelectorAll(
    "pre, table, .pst-scrollable-table-container, .table-wrapper, figure, img, " +
    ".sphx-glr-script-out");
  wide.forEach(e => {
    const style = win.getComputedStyle(e);
    if (style.display === "none" || e.closest("mjx-container")) return;
    const box = e.getBoundingClientRect(), content = doc.querySelector("article") || doc.body;
    const column = content.getBoundingClientRect();
    if (e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0) {
      report.overflow.push(`${what(e)}: scrolls ${e.scrollWidth} > ${e.clientWidth} px`);
    } else if (box.right > column.right + 2 && box.width > 0) {
      const past = Math.round(box.right - column.right);
      report.overflow.push(`${what(e)}: spills ${past} px past the column`);
    }
  });
  report.overflow = report.overflow.slice(0, 8);
  return report;
}
(async () => {
  const frame = document.getElementById("f"), out = [];
  for (const page of PAGES) {
    try { out.push(await check(frame, page)); }
    catch (e) { out.push({page: page, error: String(e)}); }
  }
  document.getElementById("result").textContent = "RESULT " + JSON.stringify(out);
})();
</script></body></html>
"""

NO_NETWORK = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--disable-default-apps",
              "--disable-domain-reliability", "--metrics-recording-only"]


def _chromium(binary: str, args: List[str], timeout: int) -> subprocess.CompletedProcess:
    base = [binary, "--headless", "--disable-gpu", "--hide-scrollbars", "--mute-audio"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        base.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return subprocess.run(base + NO_NETWORK + args, capture_output=True, text=True,
                          timeout=timeout)


def _pages(site: str) -> List[str]:
    pages = []
    for folder, _, files in os.walk(site):
        rel = os.path.relpath(folder, site).replace(os.sep, "/")
        if rel != "." and (rel.startswith(("_", ".")) or "/_" in rel):
            continue  # _static, _images, _sources, ...: no pages
        pages += [os.path.join(folder, n) for n in files if n.endswith(".html")]
    return sorted(pages)


def _requests_to_network(netlog: str) -> List[str]:
    """The http(s) addresses the pages asked for, from Chromium's network log.

    Every request Chromium starts is a URL_REQUEST_START_JOB event; those of a page carry
    the page's origin as ``initiator`` ("null" for a file), those Chromium makes for
    itself (updates, accounts) "not an origin".
    """
    try:
        with open(netlog, encoding="utf-8", errors="replace") as fh:
            text = fh.read().rstrip().rstrip(",")
    except OSError:
        return ["(Chromium wrote no network log)"]
    for tail in ("", "]}", "\n]}"):  # a log cut short lacks its closing brackets
        try:
            log = json.loads(text + tail)
            break
        except ValueError:
            continue
    else:
        return ["(Chromium's network log is unreadable)"]
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = set()
    for event in log["events"]:
        params = event.get("params") or {}
        url = str(params.get("url", ""))
        if (event.get("type") == start and re.match(r"(?i)(?:https?|wss?):", url)
                and params.get("initiator") != "not an origin"):
            urls.add(url)
    return sorted(urls)


def render(site: str, shots: str, chromium: str) -> List[str]:
    site = os.path.abspath(site)
    os.makedirs(shots, exist_ok=True)
    pages = _pages(site)
    problems: List[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        harness = os.path.join(site, "_docs_check_harness.html")
        with open(harness, "w", encoding="utf-8") as fh:
            fh.write(HARNESS.replace("__PAGES__", json.dumps(
                [os.path.relpath(p, site).replace(os.sep, "/") for p in pages])))
        netlog = os.path.join(tmp, "netlog.json")
        try:
            run = _chromium(chromium, [
                "--allow-file-access-from-files", "--window-size=1300,1000",
                f"--user-data-dir={os.path.join(tmp, 'profile')}", f"--log-net-log={netlog}",
                "--virtual-time-budget=600000", "--dump-dom", "file://" + harness], timeout=300)
        finally:
            os.remove(harness)
        m = re.search(r"RESULT (\[.*\])", run.stdout.replace("&quot;", '"').replace("&amp;", "&")
                      .replace("&lt;", "<").replace("&gt;", ">"))
        if not m:
            return [f"chromium gave no result (exit {run.returncode}): {run.stderr[-2000:]}"]
        reports: List[Dict] = json.loads(m.group(1))
        with_math = 0
        for r in reports:
            page = r["page"]
            if "error" in r:
                problems.append(f"{page}: {r['error']}")
                continue
            if r["math_sources"]:
                with_math += 1
                print(f"  {page}: {r['math_sources']} formulas in the source, "
                      f"{r['typeset']} typeset")
                if r["typeset"] == 0:
                    problems.append(f"{page}: {r['math_sources']} formulas, none typeset")
            problems += [f"{page}: raw TeX in the rendered text: ...{t}..." for t in r["raw_tex"]]
            problems += [f"{page}: sideways: {o}" for o in r["overflow"]]
        typeset = sum(r.get("typeset", 0) for r in reports)
        print(f"rendered {len(reports)} pages offline in Chromium: {with_math} with math, "
              f"{typeset} formulas typeset by MathJax")
        if len(reports) != len(pages):
            problems.append(f"checked {len(reports)} of {len(pages)} pages")
        problems += [f"a request to the network: {u}" for u in _requests_to_network(netlog)]
        for page in ("bowl.html", "index.html"):
            png = os.path.join(shots, page.replace(".html", ".png"))
            _chromium(chromium, ["--window-size=1280,1400", "--virtual-time-budget=20000",
                                 f"--user-data-dir={os.path.join(tmp, 'profile')}",
                                 f"--screenshot={png}", "file://" + os.path.join(site, page)],
                      timeout=120)
            with open(png, "rb") as fh:
                if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                    problems.append(f"{png}: not a PNG")
            print(f"screenshot of {page}: {png} ({os.path.getsize(png)} bytes)")
    return problems


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scan")
    s.add_argument("site")
    r = sub.add_parser("render")
    r.add_argument("site")
    r.add_argument("shots")
    r.add_argument("--chromium", default="chromium")
    args = parser.parse_args(argv)
    problems = scan(args.site) if args.command == "scan" else \
        render(args.site, args.shots, args.chromium)
    for p in problems:
        print("  " + p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s): failing the run", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
