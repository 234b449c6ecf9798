// How revisit.js sends: bodies under the browsers' 64 KiB keepalive quota, sendBeacon when a
// keepalive fetch fails, a plain fetch when the beacon is refused, text/plain bodies, and a
// flush when the page is hidden or left.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { openPage, sentEvents, testPage } from './pages.mjs';
import { launchBrowser, readOutbox, startServer, waitFor } from './support.mjs';

const MAX_BODY_BYTES = 60000;
const KEEPALIVE_QUOTA_BYTES = 65536;

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

/** Pushes `count` add-to-cart events of about `size` bytes each, in one task. */
function pushEvents(page, count, size) {
  return page.evaluate(
    ([count, size]) => {
      const ids = [];
      for (let index = 0; index < count; index += 1) {
        const id = `bulk-${index}`;
        ids.push(id);
        window.revisitDataLayer.push({
          event: 'dl_add_to_cart',
          event_id: id,
          ecommerce: {
            currencyCode: 'USD',
            add: { products: [{ id: `SKU-${index}`, name: 'x'.repeat(size), price: '1.00' }] }
          }
        });
      }
      return ids;
    },
    [count, size]
  );
}

/**
 * Collects the status and request content type of every /collect response on `page`. Response
 * bodies stay unread: the DevTools protocol does not return them for keepalive requests.
 */
function recordAnswers(page) {
  const answers = [];
  page.on('response', (response) => {
    if (!response.url().endsWith('/collect')) return;
    answers.push({
      status: response.status(),
      type: response.request().headers()['content-type']
    });
  });
  return answers;
}

/** Event ids that reached Meta's outbox, which takes every event with a user agent. */
function deliveredToMeta() {
  return readOutbox(server.outboxDir, 'meta').flatMap((request) => request.event_ids);
}

describe('revisit.js transport', () => {
  test('150 events go in chunks under the quota', async (t) => {
    const context = await browser.newContext();
    const page = await openPage(context, server.origin, testPage());
    const answers = recordAnswers(page);
    // Hold every request for a second so that chunks are in flight together, as at unload.
    await page.route(`${server.origin}/collect`, async (route) => {
      await new Promise((done) => setTimeout(done, 1000));
      await route.continue();
    });

    const ids = await pushEvents(page, 150, 300);
    await page.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    const delivered = await waitFor(() => {
      const found = deliveredToMeta().filter((id) => id.startsWith('bulk-'));
      return found.length >= 150 && found;
    }, 'all 150 events in the outbox');

    const log = await page.evaluate(() => window.transportLog);
    const totalBytes = log.reduce((sum, entry) => sum + entry.bytes, 0);
    const sends = log.map((entry) => `${entry.via}${entry.keepalive ? ' keepalive' : ''}`);
    t.diagnostic(`sends: ${sends.map((send, i) => `${send} ${log[i].bytes} B -> ${log[i].result}`)}`);
    assert.ok(totalBytes > 80000, `the events are about 90,000 bytes (${totalBytes})`);
    assert.deepEqual([...delivered].sort(), [...ids].sort());
    assert.ok(log.length >= 2, `${log.length} requests`);
    for (const entry of log) {
      assert.ok(entry.bytes <= MAX_BODY_BYTES, `a body of ${entry.bytes} bytes`);
    }
    const keepaliveBytes = log
      .filter((entry) => entry.via === 'fetch' && entry.keepalive)
      .reduce((sum, entry) => sum + entry.bytes, 0);
    assert.ok(keepaliveBytes <= KEEPALIVE_QUOTA_BYTES, `${keepaliveBytes} keepalive bytes`);
    assert.ok(log.some((entry) => entry.via === 'beacon'), 'the second chunk went as a beacon');
    const sent = (await sentEvents(page)).map((event) => event.event_id);
    assert.deepEqual([...new Set(sent)].sort(), [...ids].sort());
    assert.equal(sent.length, 150, 'no event was sent twice');
    for (const answer of answers) assert.equal(answer.status, 202);
    await context.close();
  });

  test('failed keepalive fetch falls back to beacon', async () => {
    const context = await browser.newContext();
    const html = testPage();
    const page = await openPage(context, server.origin, html, { mode: { fetch: 'reject-all' } });
    const answers = recordAnswers(page);

    const [id] = await pushEvents(page, 1, 10);
    await page.evaluate(() => window.revisit.flush());
    await waitFor(() => answers.length === 1, 'the beacon answer');

    const log = await page.evaluate(() => window.transportLog);
    assert.deepEqual(
      log.map((entry) => [entry.via, entry.result]),
      [
        ['fetch', 'rejected'],
        ['beacon', true]
      ]
    );
    assert.equal(answers[0].status, 202);
    assert.equal(answers[0].type, 'text/plain;charset=UTF-8');
    await waitFor(() => deliveredToMeta().includes(id), 'the beacon event in the outbox');
    await context.close();
  });

  test('refused beacon falls back to plain fetch', async () => {
    const context = await browser.newContext();
    const mode = { fetch: 'reject-keepalive', beacon: 'refuse' };
    const page = await openPage(context, server.origin, testPage(), { mode });
    const answers = recordAnswers(page);

    await pushEvents(page, 1, 10);
    await page.evaluate(() => window.revisit.flush());
    await waitFor(() => answers.length === 1, 'the plain fetch answer');

    const log = await page.evaluate(() => window.transportLog);
    assert.deepEqual(
      log.map((entry) => [entry.via, entry.keepalive, entry.result]),
      [
        ['fetch', true, 'rejected'],
        ['beacon', undefined, false],
        ['fetch', false, 202]
      ]
    );
    assert.equal(log[2].credentials, 'include');
    assert.equal(answers[0].status, 202);
    await page.waitForFunction(() => window.transportLog[2].answer);
    assert.equal(await page.evaluate(() => window.transportLog[2].answer.accepted), 1);
    await context.close();
  });

  test('keepalive fetch sends text/plain with credentials', async () => {
    const context = await browser.newContext();
    const page = await openPage(context, server.origin, testPage());
    const answers = recordAnswers(page);

    await pushEvents(page, 2, 10);
    await page.evaluate(() => window.revisit.flush());
    await waitFor(() => answers.length === 1, 'the answer');

    const log = await page.evaluate(() => window.transportLog);
    assert.equal(log.length, 1, 'two events, one request');
    assert.equal(log[0].via, 'fetch');
    assert.equal(log[0].keepalive, true);
    assert.equal(log[0].credentials, 'include');
    assert.equal(answers[0].type, 'text/plain;charset=UTF-8');
    assert.equal(answers[0].status, 202);
    await page.waitForFunction(() => window.transportLog[0].answer);
    assert.equal(await page.evaluate(() => window.transportLog[0].answer.accepted), 2);
    await context.close();
  });

  for (const trigger of ['pagehide', 'visibilitychange']) {
    test(`${trigger} flushes pending events`, async () => {
      const context = await browser.newContext();
      const page = await openPage(context, server.origin, testPage());

      const sendsAtTrigger = await page.evaluate((name) => {
        window.revisitDataLayer.push({ event: 'dl_view_cart', event_id: `on-${name}` });
        const before = window.transportLog.length;
        if (name === 'pagehide') {
          window.dispatchEvent(new Event('pagehide'));
        } else {
          Object.defineProperty(document, 'visibilityState', { value: 'hidden' });
          document.dispatchEvent(new Event('visibilitychange'));
        }
        return [before, window.transportLog.length];
      }, trigger);

      assert.deepEqual(sendsAtTrigger, [0, 1], 'queued, then sent within the event handler');
      const [event] = await sentEvents(page);
      assert.equal(event.event_id, `on-${trigger}`);
      await context.close();
    });
  }

  test('queued events wait for the batch delay', async () => {
    const context = await browser.newContext();
    const page = await openPage(context, server.origin, testPage());

    const immediately = await page.evaluate(() => {
      window.revisitDataLayer.push({ event: 'dl_view_cart', event_id: 'batched' });
      return window.transportLog.length;
    });
    await page.waitForFunction(() => window.transportLog.length === 1);

    assert.equal(immediately, 0);
    await context.close();
  });
});
