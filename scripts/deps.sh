#!/usr/bin/env bash
# What a fresh machine lacks for the tests, installed only when missing: lavapipe (software
# Vulkan), Chromium, Firefox ESR, WebKitGTK's WebDriver with its MiniBrowser and Xvfb (the
# browser tests in three engines) from Debian, the wasm32 target, wasm-bindgen-cli at the
# crate's pinned version (into $ONESTEP_CACHE/tools) and web/'s npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
need=()
[ -f /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || need+=(mesa-vulkan-drivers)
ldconfig -p | grep -q 'libvulkan.so.1' || need+=(libvulkan1)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/firefox-esr ] || need+=(firefox-esr)
[ -x /usr/bin/WebKitWebDriver ] || need+=(webkit2gtk-driver)
command -v xvfb-run >/dev/null || need+=(xvfb)
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
v=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
[ "$("$ONESTEP_CACHE/tools/bin/wasm-bindgen" --version 2>/dev/null)" = "wasm-bindgen $v" ] \
  || cargo install wasm-bindgen-cli --version "$v" --root "$ONESTEP_CACHE/tools"
missing=
for m in playwright-core puppeteer-core selenium-webdriver fflate; do [ -d "web/node_modules/$m" ] || missing=1; done
[ -z "$missing" ] || npm --prefix web ci --no-audit --no-fund
