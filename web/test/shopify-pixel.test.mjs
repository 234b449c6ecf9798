// The Shopify custom pixel in the kind of sandbox Shopify runs it in: an iframe with
// sandbox="allow-scripts", whose requests carry `Origin: null` and no cookies. The standard API
// objects (analytics, browser, init) are stand-ins that publish three customer events.

import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import {
  WEB_DIR,
  launchBrowser,
  readOutbox,
  startPageServer,
  startServer,
  waitFor
} from './support.mjs';

const CLIENT_ID = 'client-7f3e2a';
const EMAIL = 'Pixel.Buyer@Example.com';
const FBCLID = 'PixelClick123';

function sha256(text) {
  return createHash('sha256').update(text).digest('hex');
}

/** Computes the visitor id the collector derives from a client id, with the data dir's secret. */
function visitorFor(dataDir, clientId) {
  const secret = readFileSync(join(dataDir, 'secret'), 'utf8').trim();
  const cookieKey = createHmac('sha256', secret).update('visitor-cookie').digest();
  return createHmac('sha256', cookieKey)
    .update(`client-id:${clientId}`)
    .digest('hex')
    .slice(0, 32);
}

function customerEvents() {
  const now = Date.now();
  const context = (href) => ({
    document: { location: { href }, referrer: 'https://www.facebook.com/', title: 'Shop' },
    navigator: { userAgent: 'ignored by the pixel' }
  });
  const variant = {
    id: '41001',
    price: { amount: 25, currencyCode: 'EUR' },
    product: { id: '8001', title: 'Wool Socks', vendor: 'Knit Co', type: 'Socks' },
    sku: 'SOCK-1',
    title: 'Blue'
  };
  return [
    {
      id: 'sh-test-page-viewed',
      name: 'page_viewed',
      clientId: CLIENT_ID,
      timestamp: new Date(now - 2000).toISOString(),
      data: {},
      context: context(`https://shop.example/?fbclid=${FBCLID}&utm_source=facebook`)
    },
    {
      id: 'sh-test-added',
      name: 'product_added_to_cart',
      clientId: CLIENT_ID,
      timestamp: new Date(now - 1000).toISOString(),
      data: {
        cartLine: { cost: { totalAmount: { amount: 50, currencyCode: 'EUR' } }, merchandise: variant, quantity: 2 }
      },
      context: context('https://shop.example/products/wool-socks')
    },
    {
      id: 'sh-test-completed',
      name: 'checkout_completed',
      clientId: CLIENT_ID,
      timestamp: new Date(now).toISOString(),
      data: {
        checkout: {
          email: EMAIL,
          phone: '+33 6 12 34 56 78',
          currencyCode: 'EUR',
          lineItems: [{ id: '41001', quantity: 2, title: 'Wool Socks', variant }],
          order: { id: 'gid://shopify/OrderIdentity/5550001' },
          billingAddress: { firstName: 'Ana', lastName: 'Moreau', city: 'Lyon', zip: '69001', countryCode: 'FR' },
          shippingLine: { price: { amount: 0, currencyCode: 'EUR' } },
          totalTax: { amount: 7.5, currencyCode: 'EUR' },
          totalPrice: { amount: 57.5, currencyCode: 'EUR' }
        }
      },
      context: context('https://shop.example/checkouts/cn/abc/thank-you')
    }
  ];
}

/** Builds the sandboxed document: stand-ins for the pixel API, the pixel, then the events. */
function sandboxDocument(endpoint, events) {
  const pixel = readFileSync(join(WEB_DIR, 'src', 'shopify-pixel.js'), 'utf8').replace(
    'https://www.shop.example/collect/shopify',
    endpoint
  );
  assert.ok(pixel.includes(endpoint), 'the endpoint line was replaced');
  const standIns = `
    var subscribers = {};
    var analytics = { subscribe: function (name, callback) {
      (subscribers[name] = subscribers[name] || []).push(callback);
    } };
    // Reads by name only, the form Shopify documents, so the pixel's named reads are tested.
    var jar = { _fbp: 'fb.1.1700000000000.987654321', _ga: 'GA1.1.111.222', other: '1' };
    var browser = { cookie: { get: function (name) {
      return Promise.resolve(name ? jar[name] || '' : '');
    } } };
    var init = {
      customerPrivacy: { analyticsProcessingAllowed: true, marketingAllowed: true,
        preferencesProcessingAllowed: true, saleOfDataAllowed: true },
      data: { customer: null }
    };
    var report = function (entry) { parent.postMessage(entry, '*'); };
    report({ via: 'origin', origin: self.origin });
    var realFetch = fetch;
    fetch = function (url, options) {
      report({ via: 'fetch', keepalive: options.keepalive, credentials: options.credentials });
      return realFetch(url, options).then(function (response) {
        report({ via: 'answer', status: response.status });
        publishNext();
        return response;
      }, function (error) {
        report({ via: 'answer', status: 'rejected' });
        throw error;
      });
    };
    navigator.sendBeacon = function () { report({ via: 'beacon' }); return false; };`;
  // Each event is published once the collector answered the previous one, as when a shopper
  // moves from page to page, so the worker sees them in order.
  const publish = `
    var upcoming = ${JSON.stringify(events)};
    function publishNext() {
      var event = upcoming.shift();
      if (!event) return;
      (subscribers[event.name] || []).forEach(function (callback) { callback(event); });
    }
    publishNext();`;
  return `<script>${standIns}</script><script>${pixel}</script><script>${publish}</script>`;
}

function outerPage(sandbox) {
  const literal = JSON.stringify(sandbox).replace(/<\//g, '<\\/');
  return `<!doctype html><html><head><title>Shop</title></head><body><script>
    window.pixelLog = [];
    window.addEventListener('message', function (message) { window.pixelLog.push(message.data); });
    var frame = document.createElement('iframe');
    frame.setAttribute('sandbox', 'allow-scripts');
    frame.srcdoc = ${literal};
    document.body.appendChild(frame);
  </script></body></html>`;
}

test('sandboxed pixel events reach Meta and Klaviyo', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const storefront = await startPageServer();
  t.after(() => storefront.stop());
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const events = customerEvents();
  storefront.setHtml(outerPage(sandboxDocument(`${server.origin}/collect/shopify`, events)));
  const page = await browser.newPage();
  t.after(() => page.close());

  await page.goto(`${storefront.origin}/`);
  await page.waitForFunction(
    () => window.pixelLog.filter((entry) => entry.via === 'answer').length === 3
  );

  // The sandboxed frame may run in another process, whose requests Playwright can miss, so the
  // frame reports what it sent and what it got back.
  const log = await page.evaluate(() => window.pixelLog);
  assert.deepEqual(log[0], { via: 'origin', origin: 'null' }, 'the pixel runs in an opaque origin');
  assert.deepEqual(
    log.filter((entry) => entry.via === 'fetch'),
    Array(3).fill({ via: 'fetch', keepalive: true, credentials: 'omit' })
  );
  assert.deepEqual(
    log.filter((entry) => entry.via === 'answer').map((entry) => entry.status),
    [202, 202, 202],
    'CORS let the opaque origin read each answer, so no fallback was sent'
  );
  assert.ok(!log.some((entry) => entry.via === 'beacon'));

  const visitorHash = sha256(visitorFor(server.dataDir, CLIENT_ID));
  const metaRequests = await waitFor(() => {
    const requests = readOutbox(server.outboxDir, 'meta');
    return requests.flatMap((request) => request.event_ids).length === 3 && requests;
  }, 'three Meta events');
  const metaEvents = metaRequests.flatMap((request) => request.body.data);
  assert.deepEqual(
    metaEvents.map((event) => [event.event_id, event.event_name]),
    [
      ['sh-test-page-viewed', 'PageView'],
      ['sh-test-added', 'AddToCart'],
      ['sh-test-completed', 'Purchase']
    ]
  );
  for (const event of metaEvents) {
    assert.ok(event.user_data.external_id.includes(visitorHash), `${event.event_id} visitor`);
    assert.equal(event.user_data.fbp, 'fb.1.1700000000000.987654321', `${event.event_id} fbp`);
    assert.match(event.user_data.fbc, new RegExp(`^fb\\.\\d\\.\\d{13}\\.${FBCLID}$`));
  }
  const purchase = metaEvents[2];
  assert.deepEqual(purchase.user_data.em, [sha256(EMAIL.toLowerCase())]);
  assert.deepEqual(purchase.user_data.ph, [sha256('33612345678')]);
  assert.equal(purchase.custom_data.value, 57.5);
  assert.equal(purchase.custom_data.currency, 'EUR');
  assert.equal(purchase.custom_data.order_id, '5550001');

  const order = await waitFor(
    () =>
      readOutbox(server.outboxDir, 'klaviyo').find((request) =>
        request.event_ids.includes('sh-test-completed')
      ),
    'the Klaviyo order'
  );
  const attributes = order.body.data.attributes;
  assert.equal(attributes.metric.data.attributes.name, 'Placed Order');
  assert.equal(attributes.profile.data.attributes.email, EMAIL.toLowerCase());
  assert.equal(attributes.value, 57.5);

  // The answer that let the sandbox read the responses: `*` without credentials.
  const direct = await fetch(`${server.origin}/collect/shopify`, {
    method: 'POST',
    headers: { origin: 'null', 'content-type': 'text/plain;charset=UTF-8' },
    body: JSON.stringify({ name: 'page_viewed', clientId: 'another-browser' })
  });
  assert.equal(direct.status, 202);
  assert.equal(direct.headers.get('access-control-allow-origin'), '*');
  assert.equal(direct.headers.get('access-control-allow-credentials'), null);
});
