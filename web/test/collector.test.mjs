// The collector as browsers meet it: credentialed CORS for allowed origins only, text/plain
// bodies as sendBeacon sends them, and the files `revisit serve` serves.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';

import { openUrl, testPage } from './pages.mjs';
import {
  WEB_DIR,
  launchBrowser,
  readOutbox,
  startPageServer,
  startServer,
  waitFor
} from './support.mjs';

const GZIP_LIMIT_BYTES = 4096;

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

function source(name) {
  return readFileSync(join(WEB_DIR, 'src', name), 'utf8');
}

describe('collector in the browser', () => {
  test('revisit.js is under 4 KB gzipped', (t) => {
    const gzipped = gzipSync(source('revisit.js'), { level: 9 }).length;

    t.diagnostic(`revisit.js: ${source('revisit.js').length} bytes, ${gzipped} gzipped`);
    assert.ok(gzipped < GZIP_LIMIT_BYTES, `${gzipped} bytes gzipped`);
  });

  test('served files match the sources', async () => {
    for (const [path, file] of [
      ['/revisit.js', 'src/revisit.js'],
      ['/shopify-pixel.js', 'src/shopify-pixel.js'],
      ['/', 'demo/index.html']
    ]) {
      const response = await fetch(`${server.origin}${path}`);

      assert.equal(response.status, 200, path);
      assert.equal(await response.text(), readFileSync(join(WEB_DIR, file), 'utf8'), path);
      const type = response.headers.get('content-type');
      assert.match(type, path === '/' ? /^text\/html/ : /^text\/javascript/, path);
    }
  });

  test('text/plain body is read as JSON', async () => {
    const body = JSON.stringify({ event: 'dl_view_cart', event_id: 'plain-text-body' });

    const response = await fetch(`${server.origin}/collect`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain;charset=UTF-8' },
      body
    });

    assert.equal(response.status, 202);
    assert.equal((await response.json()).accepted, 1);
  });

  test('invalid JSON gets 400', async () => {
    const response = await fetch(`${server.origin}/collect`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain;charset=UTF-8' },
      body: '{"event": "dl_view_cart",'
    });

    assert.equal(response.status, 400);
    assert.match((await response.json()).error, /not valid JSON/);
  });

  test('body over 64 KiB gets 413', async () => {
    const padding = 'x'.repeat(70000);
    const body = JSON.stringify({ event: 'dl_view_cart', event_id: 'too-large', padding });

    const response = await fetch(`${server.origin}/collect`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain;charset=UTF-8' },
      body
    });

    assert.equal(response.status, 413);
  });

  test('allowed cross-origin page sends with cookies', async (t) => {
    // The storefront is on its own loopback origin, which this collector allows; both are
    // on host 127.0.0.1, so they are one site and the SameSite=Lax cookie travels.
    const storefront = await startPageServer();
    t.after(() => storefront.stop());
    const collector = await startServer({ REVISIT_ALLOWED_ORIGINS: storefront.origin });
    t.after(() => collector.stop());
    storefront.setHtml(testPage({ scriptSrc: `${collector.origin}/revisit.js` }));
    const page = await browser.newPage();
    t.after(() => page.close());
    const answers = [];
    page.on('response', (response) => {
      if (response.url().endsWith('/collect')) answers.push(response);
    });
    await openUrl(page, `${storefront.origin}/`);

    for (const id of ['first-cross-origin', 'second-cross-origin']) {
      await page.evaluate((eventId) => {
        window.revisitDataLayer.push({ event: 'dl_view_cart', event_id: eventId });
        window.revisit.flush();
      }, id);
      await waitFor(() => answers.length === (id.startsWith('first') ? 1 : 2), 'an answer');
    }

    const headers = await answers[0].allHeaders();
    assert.equal(answers[0].status(), 202);
    assert.equal(headers['access-control-allow-origin'], storefront.origin);
    assert.equal(headers['access-control-allow-credentials'], 'true');
    const first = await answers[0].request().allHeaders();
    assert.equal(first.origin, storefront.origin);
    assert.match(headers['set-cookie'], /^rv_uid=/);
    const second = await answers[1].request().allHeaders();
    assert.match(second.cookie || '', /rv_uid=/, 'the second request carries the visitor cookie');
    await page.waitForFunction(() => window.transportLog.every((entry) => entry.result !== 'pending'));
    const log = await page.evaluate(() => window.transportLog);
    assert.deepEqual(
      log.map((entry) => entry.result),
      [202, 202],
      'each fetch passed CORS, so no fallback was sent'
    );
  });

  test('foreign origin is rejected', async (t) => {
    const html = testPage({ scriptSrc: `${server.origin}/revisit.js` });
    const storefront = await startPageServer(html);
    t.after(() => storefront.stop());
    const page = await browser.newPage();
    t.after(() => page.close());
    const answers = [];
    page.on('response', (response) => {
      if (response.url().endsWith('/collect')) answers.push(response);
    });
    await openUrl(page, `${storefront.origin}/`);

    await page.evaluate(() => {
      window.revisitDataLayer.push({ event: 'dl_view_cart', event_id: 'from-foreign-origin' });
      window.revisit.flush();
    });
    await waitFor(() => answers.length >= 1, 'the collector answer');
    await page.waitForFunction(() => window.transportLog.length >= 2);

    for (const answer of answers) {
      const headers = await answer.allHeaders();
      assert.equal(answer.status(), 403);
      assert.equal(headers['access-control-allow-origin'], undefined);
    }
    const log = await page.evaluate(() => window.transportLog);
    assert.equal(log[0].result, 'rejected', 'the browser blocks the answer without CORS headers');
    const delivered = readOutbox(server.outboxDir, 'meta').flatMap((request) => request.event_ids);
    assert.ok(!delivered.includes('from-foreign-origin'));
  });
});
