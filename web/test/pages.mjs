// Test pages for revisit.js: served through Playwright's request routing on the collector's own
// origin, with fetch and sendBeacon wrapped so a test can see every send and its outcome.

/**
 * Init script that records each fetch and beacon in `window.transportLog`. `mode` such as
 * `{fetch: 'reject-keepalive' | 'reject-all', beacon: 'refuse'}` makes a transport fail the way
 * a browser over its keepalive quota does.
 */
export const RECORD_TRANSPORT = (mode) => {
  window.transportLog = [];
  window.transportMode = mode || {};
  const bytes = (body) => new Blob([body || '']).size;
  const realFetch = window.fetch.bind(window);
  window.fetch = function (url, options = {}) {
    const entry = {
      via: 'fetch',
      keepalive: Boolean(options.keepalive),
      credentials: options.credentials,
      bytes: bytes(options.body),
      body: options.body,
      result: 'pending'
    };
    window.transportLog.push(entry);
    const mode = window.transportMode.fetch;
    if (mode === 'reject-all' || (mode === 'reject-keepalive' && options.keepalive)) {
      entry.result = 'rejected';
      return Promise.reject(new TypeError('Failed to fetch'));
    }
    return realFetch(url, options).then(
      (response) => {
        entry.result = response.status;
        response
          .clone()
          .json()
          .then((answer) => (entry.answer = answer))
          .catch(() => {});
        return response;
      },
      (error) => {
        entry.result = 'rejected';
        throw error;
      }
    );
  };
  const realBeacon = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = function (url, data) {
    const refused = window.transportMode.beacon === 'refuse';
    const queued = refused ? false : realBeacon(url, data);
    window.transportLog.push({ via: 'beacon', bytes: bytes(data), body: data, result: queued });
    return queued;
  };
};

/**
 * Builds a page that runs `head` (HTML placed before the script tag), then loads revisit.js from
 * `scriptSrc`.
 */
export function testPage({ head = '', body = '', scriptSrc = '/revisit.js' } = {}) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>revisit test page</title>
${head}
<script src="${scriptSrc}"></script></head><body>${body}</body></html>`;
}

/**
 * Opens `html` at `origin` + `path`, served by Playwright's request routing, and waits for
 * revisit.js to load. Chromium places such a page in the public address space, so it may load
 * scripts from the loopback collector only when it is on the collector's own origin.
 */
export async function openPage(context, origin, html, { path = '/test-page', mode, referer } = {}) {
  const page = await context.newPage();
  await page.route(`${origin}${path}*`, (route) =>
    route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: html })
  );
  return openUrl(page, `${origin}${path}`, { mode, referer });
}

/** Loads `url` in `page` with the transport recorder and waits for revisit.js to load. */
export async function openUrl(page, url, { mode, referer } = {}) {
  await page.addInitScript(RECORD_TRANSPORT, mode || {});
  await page.goto(url, { referer });
  await page.waitForFunction(() => window.revisit && window.revisit.flush);
  return page;
}

/** Returns the events of every body sent to the collector so far, in send order. */
export async function sentEvents(page) {
  const log = await page.evaluate(() => window.transportLog);
  return log
    .filter((entry) => entry.result !== 'rejected' && entry.result !== false)
    .flatMap((entry) => JSON.parse(entry.body));
}
