#!/usr/bin/env bash
# Headless screenshot of a run's report.html, and its page height at a given width.
#
#   bench/report_screenshot.sh RUN_DIR|PAGE.html [OUT.png] [WIDTH] [HEIGHT]
#
# RUN_DIR: its report.html (write it with `moga report RUN_DIR`); or any page. OUT.png defaults to report.png
# beside the page; WIDTH to 1400 px. HEIGHT: the screenshot's height; default the whole
# page (pass e.g. 1800 for the top part only). Prints "report.html: <bytes> bytes, page height <px> px at <WIDTH> px".
# Needs Chromium (Debian: apt-get install -y chromium); without it, says so and exits 0.
#
# How the height is measured: a copy of the report with one appended script, which writes
# document.documentElement.scrollHeight into the DOM once every image has loaded, is opened with --dump-dom
# (the report itself is not changed). The screenshot is then taken with the window that tall.
set -euo pipefail

browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "report_screenshot: no Chromium on PATH (Debian: apt-get install -y chromium); nothing done"
    exit 0
fi
target=${1:?usage: bench/report_screenshot.sh RUN_DIR|PAGE.html [OUT.png] [WIDTH] [HEIGHT]}
if [ -d "$target" ]; then report=$target/report.html; else report=$target; fi
out=${2:-$(dirname "$report")/report.png}
width=${3:-1400}
height=${4:-}

[ -f "$report" ] || { echo "report_screenshot: no $report (write it with: moga report RUN_DIR)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --hide-scrollbars)

cp "$report" "$tmp/measure.html"
echo '<script>window.addEventListener("load",()=>{const p=document.createElement("p");p.id="moga-page-height";p.textContent=document.documentElement.scrollHeight;document.body.append(p)})</script>' >>"$tmp/measure.html"
page=$("$browser" "${flags[@]}" --user-data-dir="$tmp/profile1" --window-size="$width,1000" --virtual-time-budget=10000 \
    --dump-dom "file://$tmp/measure.html" 2>/dev/null | sed -n 's/.*<p id="moga-page-height">\([0-9]*\)<\/p>.*/\1/p')
[ -n "$page" ] || { echo "report_screenshot: could not measure the page height" >&2; exit 1; }

shot=${height:-$page}
"$browser" "${flags[@]}" --user-data-dir="$tmp/profile2" --window-size="$width,$shot" --virtual-time-budget=10000 \
    --screenshot="$out" "file://$(realpath "$report")" >/dev/null 2>&1
echo "$(basename "$report"): $(stat -c %s "$report") bytes, page height $page px at $width px; screenshot ${width}x$shot -> $out"
