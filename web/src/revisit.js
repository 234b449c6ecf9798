/*! revisit storefront script: forwards data-layer events to the revisit collector. Apache-2.0 */
// Install: <script async src="https://COLLECTOR/revisit.js"></script>
// Attributes: data-endpoint (default: the script's origin + /collect) and data-layer (the name
// of revisit's own layer, default revisitDataLayer). Consent: see docs/install-pixel.md.
(function (w, d) {
  'use strict';
  if (w.revisit && w.revisit.flush) return;

  var script = d.currentScript;
  var option = function (name) {
    return script && script.getAttribute('data-' + name);
  };
  var endpoint = option('endpoint') || new URL('/collect', script ? script.src : location.href).href;
  var ownLayer = option('layer') || 'revisitDataLayer';

  // The Fetch standard allows a page 64 KiB of keepalive request bodies in flight together,
  // and Chromium counts beacons in the same allowance. Bodies stay at about 60,000 bytes so that
  // one chunk fits beside small requests of other scripts.
  var MAX_BODY_BYTES = 60000;
  var KEEPALIVE_QUOTA_BYTES = 65536;
  var FLUSH_DELAY_MS = 500;
  var MAX_TRIES = 3;
  var COOKIES = /^(_fbp|_fbc|_ga|_ga_\w+|_ttp|_kla_id|__kla_id|_epik|_scid|_uetmsclkid|_gcl_aw|ttclid)$/;

  var queue = [];
  var queuedBytes = 1;
  var keepaliveBytes = 0;
  var timer = 0;
  var seen = {};
  var consent = {};
  var encoder = w.TextEncoder ? new TextEncoder() : null;

  function byteLength(text) {
    return encoder ? encoder.encode(text).length : new Blob([text]).size;
  }

  function randomId() {
    if (w.crypto && crypto.randomUUID) return crypto.randomUUID();
    return 'rv-' + Date.now().toString(36) + '-' + Math.random().toString(36).slice(2);
  }

  function readCookies() {
    var found = {};
    d.cookie.split(';').forEach(function (pair) {
      var at = pair.indexOf('=');
      var name = pair.slice(0, at).trim();
      if (at > 0 && COOKIES.test(name)) found[name] = pair.slice(at + 1).trim();
    });
    return found;
  }

  // Consent from a layer push such as {consent: {analytics: true, marketing: false}}.
  function setConsent(given) {
    ['analytics', 'marketing'].forEach(function (purpose) {
      if (typeof given[purpose] === 'boolean') consent[purpose] = given[purpose];
    });
  }

  // Shopify's Customer Privacy API, when the theme loaded it. Marketing also needs the
  // sale-of-data permission, because revisit shares events with ad platforms.
  function readShopifyConsent() {
    var privacy = w.Shopify && w.Shopify.customerPrivacy;
    if (!privacy || !privacy.analyticsProcessingAllowed) return;
    try {
      setConsent({
        analytics: !!privacy.analyticsProcessingAllowed(),
        marketing: !!privacy.marketingAllowed() && privacy.saleOfDataAllowed() !== false
      });
    } catch (error) {
      // An API that failed to load says nothing about consent.
    }
  }

  function take(item) {
    if (!item || typeof item !== 'object') return;
    if (item.consent && !item.event) return setConsent(item.consent);
    var name = item.event;
    if (typeof name !== 'string' || name.indexOf('dl_') !== 0) return;
    readShopifyConsent();
    if (consent.analytics === false && consent.marketing === false) return;
    var event = {};
    for (var key in item) {
      if (Object.prototype.hasOwnProperty.call(item, key)) event[key] = item[key];
    }
    // The browser's id is kept as sent: destinations deduplicate on it.
    event.event_id = event.event_id == null || event.event_id === '' ? randomId() : event.event_id;
    if (seen[event.event_id]) return;
    seen[event.event_id] = 1;
    if (event.event_time == null) event.event_time = Date.now();
    event.context = {
      page_url: location.href,
      referrer: d.referrer || undefined,
      page_title: d.title || undefined,
      cookies: readCookies(),
      consent: { analytics: consent.analytics, marketing: consent.marketing }
    };
    enqueue({ json: JSON.stringify(event), tries: 0 });
  }

  // A body that would pass MAX_BODY_BYTES with this event is sent first.
  function enqueue(entry) {
    entry.bytes = byteLength(entry.json);
    if (queue.length && queuedBytes + entry.bytes + 1 > MAX_BODY_BYTES) flush();
    queue.push(entry);
    queuedBytes += entry.bytes + 1;
    if (!timer) timer = setTimeout(flush, FLUSH_DELAY_MS);
  }

  // Sends everything queued, in bodies of at most MAX_BODY_BYTES (one larger event goes alone).
  function flush() {
    clearTimeout(timer);
    timer = 0;
    while (queue.length) {
      var chunk = [];
      var bytes = 1;
      while (queue.length && (!chunk.length || bytes + queue[0].bytes + 1 <= MAX_BODY_BYTES)) {
        bytes += queue[0].bytes + 1;
        chunk.push(queue.shift());
      }
      send(chunk, bytes);
    }
    queuedBytes = 1;
  }

  function post(body, keepalive) {
    return fetch(endpoint, {
      method: 'POST',
      body: body,
      keepalive: keepalive,
      credentials: 'include',
      // A CORS-safelisted type needs no preflight, like a beacon's (text/plain;charset=UTF-8).
      headers: { 'Content-Type': 'text/plain;charset=UTF-8' }
    });
  }

  function beacon(body) {
    try {
      return !!(navigator.sendBeacon && navigator.sendBeacon(endpoint, body));
    } catch (error) {
      return false;
    }
  }

  function retryLater(chunk) {
    chunk.forEach(function (entry) {
      if (++entry.tries < MAX_TRIES) {
        queue.push(entry);
        queuedBytes += entry.bytes + 1;
      }
    });
    if (queue.length && !timer) timer = setTimeout(flush, FLUSH_DELAY_MS * 4);
  }

  // keepalive fetch while this page's own in-flight bytes fit the quota, else a beacon, and
  // when the beacon is refused (it returns false over the quota) a plain fetch.
  function send(chunk, bytes) {
    var body = '[' + chunk.map(function (entry) { return entry.json; }).join(',') + ']';
    var answered = function (response) {
      if (response.status >= 500 || response.status === 429) retryLater(chunk);
    };
    if (w.fetch && keepaliveBytes + bytes <= KEEPALIVE_QUOTA_BYTES) {
      keepaliveBytes += bytes;
      var settled = function () {
        keepaliveBytes -= bytes;
      };
      try {
        post(body, true).then(
          function (response) {
            settled();
            answered(response);
          },
          function () {
            settled();
            if (!beacon(body)) post(body, false).then(answered, function () {});
          }
        );
        return;
      } catch (error) {
        settled();
      }
    }
    if (beacon(body) || !w.fetch) return;
    post(body, false).then(answered, function () {
      retryLater(chunk);
    });
  }

  function hook(name) {
    var layer = (w[name] = w[name] || []);
    if (layer.revisitHooked) return;
    layer.revisitHooked = true;
    var push = layer.push;
    layer.push = function () {
      var result = push.apply(layer, arguments);
      for (var i = 0; i < arguments.length; i++) take(arguments[i]);
      return result;
    };
    for (var i = 0; i < layer.length; i++) take(layer[i]);
  }

  d.addEventListener('visitorConsentCollected', function (event) {
    var given = event.detail || {};
    setConsent({
      analytics: !!given.analyticsAllowed,
      marketing: !!given.marketingAllowed && given.saleOfDataAllowed !== false
    });
  });
  d.addEventListener('visibilitychange', function () {
    if (d.visibilityState === 'hidden') flush();
  });
  w.addEventListener('pagehide', flush);

  w.revisit = { flush: flush, endpoint: endpoint };
  hook(ownLayer);
  if (ownLayer !== 'ElevarDataLayer') hook('ElevarDataLayer');
})(window, document);
