# Browser tests of the storefront script and the Shopify pixel: headless Debian Chromium driven
# by playwright-core against the revisit binary. Sourced by scripts/test, which provides LOG_DIR
# and runs with `set -euo pipefail`, so any failed command fails the run.

if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium (playwright-core never downloads a browser here)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

(cd web && npm ci --no-audit --no-fund)

# The web files are built into the binary with include_str!, so Cargo rebuilds it when they
# change and does nothing otherwise.
cargo build -p revisit --locked

# TAP output: scripts/test counts its "# pass" and "# fail" lines.
(cd web && node --test --test-reporter=tap --test-concurrency=1 test/*.test.mjs) 2>&1 |
  tee "$LOG_DIR/web.log"
echo "screenshot of the demo store: web/test-output/demo-store.png"
