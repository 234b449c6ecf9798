// The returning-visitor journey in Chromium. An ad click with fbclid and UTMs and a newsletter
// signup happen on day 0. Every script-written cookie is then deleted, as Safari's 7-day cap
// does, and the server clock moves 8 days on. An add-to-cart must still reach Klaviyo and Meta
// with the email and the day-0 fbc.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { OUTPUT_DIR, launchBrowser, readOutbox, startServer, waitFor } from './support.mjs';

const DAY_SECONDS = 86400;
const YEAR_SECONDS = 365 * DAY_SECONDS;
const EMAIL = 'Returning.Shopper@Example.com';
const FBCLID = 'IwAR2F4-dbP0l7Mn_Return';

function sha256(text) {
  return createHash('sha256').update(text).digest('hex');
}

/** Resolves with the collector's response to the next /collect request carrying `eventName`. */
function collectResponse(page, eventName) {
  return page.waitForResponse(
    (response) =>
      response.url().endsWith('/collect') &&
      (response.request().postData() || '').includes(`"${eventName}"`)
  );
}

function lastPushed(page, eventName) {
  return page.evaluate(
    (name) => window.revisitDataLayer.filter((item) => item.event === name).pop().event_id,
    eventName
  );
}

function requestFor(outbox, destination, eventId) {
  return readOutbox(outbox, destination).find((request) => request.event_ids.includes(eventId));
}

test('returning visitor keeps email and day-0 fbc', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const context = await browser.newContext();
  const page = await context.newPage();
  mkdirSync(OUTPUT_DIR, { recursive: true });

  // Day 0: the ad click lands, then the shopper subscribes.
  const day0Start = Date.now();
  const landing = `${server.origin}/?fbclid=${FBCLID}&utm_source=facebook&utm_medium=paid_social`;
  const pageView = collectResponse(page, 'dl_view_item');
  await page.goto(landing);
  assert.equal((await pageView).status(), 202);
  await page.fill('#email', EMAIL);
  const subscribed = collectResponse(page, 'dl_subscribe');
  await page.click('#newsletter button[type=submit]');
  assert.equal((await subscribed).status(), 202);
  await page.waitForSelector('#thanks', { state: 'visible' });
  await page.screenshot({ path: join(OUTPUT_DIR, 'demo-store.png'), fullPage: true });
  const subscribeId = await lastPushed(page, 'dl_subscribe');
  const lead = await waitFor(
    () => requestFor(server.outboxDir, 'meta', subscribeId),
    'the Meta Lead request'
  );
  const day0End = Date.now();
  const day0Fbc = lead.body.data[0].user_data.fbc;
  const fbcParts = /^fb\.(\d)\.(\d{13})\.(.+)$/.exec(day0Fbc || '');
  assert.ok(fbcParts, `day-0 fbc ${day0Fbc} is fb.<index>.<ms>.<fbclid>`);
  assert.equal(fbcParts[3], FBCLID);
  assert.ok(Number(fbcParts[2]) >= day0Start - 1000, 'fbc was created on day 0, not before');
  assert.ok(Number(fbcParts[2]) <= day0End, 'fbc was created on day 0, not later');

  // The browser loses every cookie a script wrote; the server-set visitor cookie stays.
  const day0Cookies = await context.cookies();
  const scriptCookies = day0Cookies.filter((cookie) => !cookie.httpOnly);
  assert.deepEqual(scriptCookies.map((cookie) => cookie.name).sort(), ['_fbc', '_fbp']);
  for (const cookie of scriptCookies) await context.clearCookies({ name: cookie.name });
  const remaining = await context.cookies();
  assert.deepEqual(remaining.map((cookie) => cookie.name), ['rv_uid']);
  const day0Visitor = remaining[0].value;

  // Day 8: both clocks move on, and the shopper comes back without any click id.
  await server.advanceClock(8 * DAY_SECONDS);
  await context.clock.setSystemTime(Date.now() + 8 * DAY_SECONDS * 1000);
  const returnView = collectResponse(page, 'dl_view_item');
  await page.goto(`${server.origin}/`);
  assert.equal((await returnView).status(), 202);
  const added = collectResponse(page, 'dl_add_to_cart');
  await page.click('#add-to-cart');
  assert.equal((await added).status(), 202);
  const addId = await lastPushed(page, 'dl_add_to_cart');

  const klaviyo = await waitFor(
    () => requestFor(server.outboxDir, 'klaviyo', addId),
    'the Klaviyo add-to-cart request'
  );
  const klaviyoEvent = klaviyo.body.data.attributes;
  assert.equal(klaviyoEvent.metric.data.attributes.name, 'Added to Cart');
  assert.equal(klaviyoEvent.unique_id, addId);
  assert.equal(klaviyoEvent.profile.data.attributes.email, EMAIL.toLowerCase());

  const meta = await waitFor(
    () => requestFor(server.outboxDir, 'meta', addId),
    'the Meta add-to-cart request'
  );
  const metaEvent = meta.body.data.find((event) => event.event_id === addId);
  assert.equal(metaEvent.event_name, 'AddToCart');
  assert.deepEqual(metaEvent.user_data.em, [sha256(EMAIL.trim().toLowerCase())]);
  assert.ok(!JSON.stringify(meta.body).includes(EMAIL.toLowerCase()), 'Meta gets no clear email');
  assert.equal(metaEvent.user_data.fbc, day0Fbc);

  // The visitor cookie: HttpOnly, Secure (kept on http://127.0.0.1, a potentially
  // trustworthy origin), SameSite=Lax, refreshed to expire a year from now.
  const visitor = (await context.cookies()).find((cookie) => cookie.name === 'rv_uid');
  assert.ok(visitor, 'the browser holds rv_uid');
  assert.equal(visitor.value, day0Visitor, 'the server re-issued the same visitor id');
  assert.equal(visitor.httpOnly, true);
  assert.equal(visitor.secure, true);
  assert.equal(visitor.sameSite, 'Lax');
  const lifetime = visitor.expires - Date.now() / 1000;
  assert.ok(Math.abs(lifetime - YEAR_SECONDS) < DAY_SECONDS, `rv_uid lives ${lifetime} s`);
  const cookieVisible = await page.evaluate(() => document.cookie.includes('rv_uid'));
  assert.equal(cookieVisible, false, 'scripts cannot read rv_uid');
});
