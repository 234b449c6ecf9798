// revisit custom pixel for Shopify. Paste into Settings > Customer events > Add custom pixel,
// then set REVISIT_ENDPOINT to the collector's Shopify route on the store's own domain.
const REVISIT_ENDPOINT = 'https://www.shop.example/collect/shopify';

(function (endpoint) {
  // Shopify runs custom pixels in a sandboxed iframe with an opaque origin, so the request
  // carries no cookies: the collector identifies the browser by the event's clientId.
  var MAX_BODY_BYTES = 60000;
  var LIST_LIMIT = 24;
  var EVENTS = [
    'page_viewed',
    'collection_viewed',
    'search_submitted',
    'product_viewed',
    'product_added_to_cart',
    'product_removed_from_cart',
    'cart_viewed',
    'checkout_started',
    'checkout_contact_info_submitted',
    'checkout_address_info_submitted',
    'checkout_shipping_info_submitted',
    'payment_info_submitted',
    'checkout_completed'
  ];
  var COOKIES = ['_fbp', '_fbc', '_ga', '_ttp', '_kla_id', '__kla_id', '_epik', '_scid', '_uetmsclkid', '_gcl_aw', 'ttclid'];

  // Marketing also needs the sale-of-data permission, because revisit shares events with ad
  // platforms. A missing status leaves both purposes unstated, for the server default.
  function consentFrom(status) {
    if (!status) return {};
    return {
      analytics: !!status.analyticsProcessingAllowed,
      marketing: !!status.marketingAllowed && status.saleOfDataAllowed !== false
    };
  }

  var consent = consentFrom(init.customerPrivacy);
  var customer = (init.data && init.data.customer) || undefined;
  var privacyApi =
    (typeof customerPrivacy !== 'undefined' && customerPrivacy) ||
    (typeof api !== 'undefined' && api && api.customerPrivacy);
  if (privacyApi && privacyApi.subscribe) {
    privacyApi.subscribe('visitorConsentCollected', function (event) {
      consent = consentFrom(event.customerPrivacy);
    });
  }

  function parseCookies(text) {
    var found = {};
    String(text || '').split(';').forEach(function (pair) {
      var at = pair.indexOf('=');
      var name = pair.slice(0, at).trim();
      if (at > 0 && (COOKIES.indexOf(name) >= 0 || /^_ga_\w+$/.test(name))) {
        found[name] = pair.slice(at + 1).trim();
      }
    });
    return found;
  }

  // browser.cookie reads the top frame's cookies by name. The _ga_<stream> names are unknown,
  // so a read without a name asks for the whole cookie string first.
  // NOTE: Shopify's reference documents get(name) only. Whether get() returns the whole string
  // is unverified, so the named reads below fill every fixed name it did not return.
  function readCookies() {
    var ignore = function () {};
    return browser.cookie
      .get()
      .then(parseCookies, function () {
        return {};
      })
      .then(function (found) {
        var missing = COOKIES.filter(function (name) {
          return !(name in found);
        });
        var reads = missing.map(function (name) {
          return browser.cookie.get(name).then(function (value) {
            if (value) found[name] = value;
          }, ignore);
        });
        return Promise.all(reads).then(function () {
          return found;
        });
      });
  }

  function trimLists(data) {
    ['collection', 'searchResult'].forEach(function (key) {
      var list = data && data[key];
      if (list && list.productVariants && list.productVariants.length > LIST_LIMIT) {
        list.productVariants = list.productVariants.slice(0, LIST_LIMIT);
      }
    });
  }

  function byteLength(text) {
    return new Blob([text]).size;
  }

  function body(event, cookies) {
    var page = (event.context && event.context.document) || {};
    var payload = {
      id: event.id,
      name: event.name,
      timestamp: event.timestamp,
      clientId: event.clientId,
      data: event.data,
      context: {
        document: {
          location: { href: page.location && page.location.href },
          referrer: page.referrer,
          title: page.title
        }
      },
      revisit: { cookies: cookies, consent: consent, customer: customer }
    };
    var text = JSON.stringify(payload);
    if (byteLength(text) > MAX_BODY_BYTES) {
      trimLists(payload.data);
      text = JSON.stringify(payload);
    }
    return text;
  }

  function send(text) {
    var request = {
      method: 'POST',
      body: text,
      keepalive: byteLength(text) <= MAX_BODY_BYTES,
      credentials: 'omit',
      headers: { 'Content-Type': 'text/plain;charset=UTF-8' }
    };
    fetch(endpoint, request).catch(function () {
      if (!navigator.sendBeacon || !navigator.sendBeacon(endpoint, text)) {
        request.keepalive = false;
        fetch(endpoint, request).catch(function () {});
      }
    });
  }

  // Cookie reads are asynchronous: chaining them sends the events in the order they happened.
  var sending = Promise.resolve();
  EVENTS.forEach(function (name) {
    analytics.subscribe(name, function (event) {
      if (consent.analytics === false && consent.marketing === false) return;
      sending = sending.then(readCookies).then(function (cookies) {
        send(body(event, cookies));
      });
    });
  });
})(REVISIT_ENDPOINT);
