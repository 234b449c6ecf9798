// What revisit.js reads and adds: both data layers (also entries pushed before it loaded), the
// browser's event ids, page context, the platform cookies and the consent state.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { openPage, sentEvents, testPage } from './pages.mjs';
import { launchBrowser, startServer } from './support.mjs';

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

async function flushed(page) {
  await page.evaluate(() => window.revisit.flush());
  return sentEvents(page);
}

describe('revisit.js context', () => {
  test('both layers are read before and after load', async () => {
    const context = await browser.newContext();
    const head = `<script>
      window.ElevarDataLayer = [{ event: 'dl_user_data', event_id: 'elevar-early' }];
      window.revisitDataLayer = [{ event: 'dl_view_item', event_id: 'own-early' }, { event: 'gtm.js' }];
    </script>`;
    const page = await openPage(context, server.origin, testPage({ head }));

    await page.evaluate(() => {
      const shared = { event: 'dl_view_cart', event_id: 'pushed-to-both' };
      window.ElevarDataLayer.push({ event: 'dl_add_to_cart', event_id: 'elevar-late' });
      window.revisitDataLayer.push({ event: 'dl_select_item', event_id: 'Mixed-Case_ID.42' });
      window.revisitDataLayer.push(shared);
      window.ElevarDataLayer.push(shared);
      window.revisitDataLayer.push({ event: 'dl_login' });
    });
    const events = await flushed(page);

    const ids = events.map((event) => event.event_id);
    assert.deepEqual(ids.slice(0, 5), [
      'own-early',
      'elevar-early',
      'elevar-late',
      'Mixed-Case_ID.42',
      'pushed-to-both'
    ]);
    assert.equal(events.length, 6, 'gtm.js is not sent and the shared event goes once');
    assert.match(ids[5], /^[0-9a-f-]{36}$/, 'an event without an id gets a random one');
    assert.equal(events[5].event, 'dl_login');
    await context.close();
  });

  test('context has page, cookies and consent', async () => {
    const context = await browser.newContext();
    const cookies = {
      _fbp: 'fb.1.1700000000000.1234567890',
      _fbc: 'fb.1.1700000000000.IwAR-click',
      _ga: 'GA1.1.111.222',
      _ga_ABC123: 'GS2.1.s1700000000$o3$g1$t1700000300$j60$l0$h0',
      _ttp: 'ttp-value',
      _kla_id: 'kla-value',
      __kla_id: 'eyIkZXhjaGFuZ2VfaWQiOiJ4In0%3D',
      _epik: 'epik-value',
      _scid: 'scid-value',
      _uetmsclkid: '_uetabc',
      unrelated: 'not-sent'
    };
    const writes = Object.entries(cookies)
      .map(([name, value]) => `document.cookie = ${JSON.stringify(`${name}=${value}; Path=/`)};`)
      .join('\n');
    const head = `<script>${writes}
      window.revisitDataLayer = [{ consent: { analytics: true, marketing: false } }];
    </script>`;
    const page = await openPage(context, server.origin, testPage({ head }), {
      referer: 'https://www.google.com/'
    });

    await page.evaluate(() => window.revisitDataLayer.push({ event: 'dl_view_cart' }));
    const [event] = await flushed(page);

    assert.equal(event.context.page_url, `${server.origin}/test-page`);
    assert.equal(event.context.referrer, 'https://www.google.com/');
    assert.equal(event.context.page_title, 'revisit test page');
    const expected = { ...cookies };
    delete expected.unrelated;
    assert.deepEqual(event.context.cookies, expected);
    assert.deepEqual(event.context.consent, { analytics: true, marketing: false });
    assert.equal(typeof event.event_time, 'number');
    await context.close();
  });

  test('Shopify customerPrivacy sets consent', async () => {
    const context = await browser.newContext();
    const head = `<script>
      window.Shopify = { customerPrivacy: {
        analyticsProcessingAllowed: () => true,
        marketingAllowed: () => true,
        saleOfDataAllowed: () => false
      } };
    </script>`;
    const page = await openPage(context, server.origin, testPage({ head }));

    await page.evaluate(() => window.revisitDataLayer.push({ event: 'dl_view_cart' }));
    const [event] = await flushed(page);

    assert.deepEqual(event.context.consent, { analytics: true, marketing: false });
    await context.close();
  });

  test('visitorConsentCollected updates consent', async () => {
    const context = await browser.newContext();
    const page = await openPage(context, server.origin, testPage());

    await page.evaluate(() => {
      const detail = { analyticsAllowed: false, marketingAllowed: true, saleOfDataAllowed: true };
      document.dispatchEvent(new CustomEvent('visitorConsentCollected', { detail }));
      window.revisitDataLayer.push({ event: 'dl_view_cart' });
    });
    const [event] = await flushed(page);

    assert.deepEqual(event.context.consent, { analytics: false, marketing: true });
    await context.close();
  });

  test('denied consent sends nothing', async () => {
    const context = await browser.newContext();
    const page = await openPage(context, server.origin, testPage());

    await page.evaluate(() => {
      window.revisitDataLayer.push({ consent: { analytics: false, marketing: false } });
      window.revisitDataLayer.push({ event: 'dl_view_cart' });
    });
    const events = await flushed(page);

    assert.deepEqual(events, []);
    assert.deepEqual(await page.evaluate(() => window.transportLog), []);
    await context.close();
  });
});
