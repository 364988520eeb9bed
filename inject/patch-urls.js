// Run-time URL mapping. The proxy maps the URLs it finds in HTML, CSS and
// headers; URLs a page builds in script reach the browser without passing
// through it. This part runs first, synchronously, before any script of the
// site, and maps absolute URLs that name an upstream to the proxy at every
// place a script hands a URL to the browser.
//
// Patched functions are Proxies of the natives, so `name`, `length`,
// `prototype`, statics and `instanceof` stay what the site expects, and
// `toString()` still says `[native code]`. No global name is added.
//
// Location assignment (`location.href = ...`, `assign`, `replace`) cannot be
// patched: those are unforgeable. Where the Navigation API exists, the
// navigation they start is caught and redirected instead.

const PATCH_URLS = (function () {
  // Upstream origin -> proxy origin for this page, from the injected tag
  // (the proxy knows which host stands for which site); without it, every
  // upstream maps to this page's origin.
  const pairs = [];
  const tag = document.currentScript;
  const map = tag && tag.getAttribute('data-cobrowse-map');
  if (map) {
    const words = map.split(' ');
    for (let i = 0; i + 1 < words.length; i += 2) pairs.push([words[i], words[i + 1]]);
  } else {
    for (const upstream of CONFIG.upstreams) pairs.push([upstream, location.origin]);
  }
  const sites = pairs.map(([upstream, proxy]) => ({
    host: upstream.replace(/^[a-z]+:\/\//i, '').toLowerCase(),
    proxyHost: proxy.replace(/^[a-z]+:\/\//i, ''),
    proxyTls: /^https:/i.test(proxy),
  }));

  const ABSOLUTE = /^(\s*)((?:https?|wss?):)?\/\/([^/?#\\\s]*)/i;

  // One URL: mapped when it names an upstream, as it came otherwise.
  function mapUrl(value) {
    if (value instanceof URL) value = value.href;
    if (typeof value !== 'string') return value;
    const m = ABSOLUTE.exec(value);
    if (!m) return value;
    const site = sites.find((s) => s.host === m[3].toLowerCase());
    if (!site) return value;
    let scheme = '';
    if (m[2]) {
      const ws = /^ws/i.test(m[2]);
      scheme = ws ? (site.proxyTls ? 'wss:' : 'ws:') : site.proxyTls ? 'https:' : 'http:';
    }
    return m[1] + scheme + '//' + site.proxyHost + value.slice(m[0].length);
  }

  // Every URL in a srcset-like list.
  function mapList(value) {
    if (typeof value !== 'string') return value;
    return value.replace(/((?:https?:)?\/\/[^\s,]+)/gi, (url) => mapUrl(url));
  }

  const nativeToString = Function.prototype.toString;

  // A Proxy of `native` with `traps`, whose toString() reads like the native.
  function disguise(native, traps) {
    const text = nativeToString.call(native);
    const toString = new Proxy(nativeToString, { apply: () => text });
    return new Proxy(native, Object.assign({
      get(target, key) {
        return key === 'toString' ? toString : Reflect.get(target, key);
      },
    }, traps));
  }

  function patchMethod(owner, name, mapArgs) {
    const d = owner && Object.getOwnPropertyDescriptor(owner, name);
    if (!d || typeof d.value !== 'function' || !d.configurable && !d.writable) return;
    const native = d.value;
    d.value = disguise(native, {
      apply(target, self, args) {
        return Reflect.apply(target, self, mapArgs(Array.from(args), self));
      },
    });
    Object.defineProperty(owner, name, d);
  }

  function patchConstructor(name, index) {
    const d = Object.getOwnPropertyDescriptor(window, name);
    if (!d || typeof d.value !== 'function') return;
    d.value = disguise(d.value, {
      construct(target, args, newTarget) {
        args = Array.from(args);
        args[index] = mapUrl(args[index]);
        return Reflect.construct(target, args, newTarget === d.value ? target : newTarget);
      },
    });
    Object.defineProperty(window, name, d);
  }

  function patchSetter(iface, prop, map) {
    const proto = window[iface] && window[iface].prototype;
    const d = proto && Object.getOwnPropertyDescriptor(proto, prop);
    if (!d || !d.set || !d.configurable) return;
    d.set = disguise(d.set, {
      apply(target, self, args) {
        return Reflect.apply(target, self, [map(args[0])]);
      },
    });
    Object.defineProperty(proto, prop, d);
  }

  const first = (args) => {
    args[0] = mapUrl(args[0]);
    return args;
  };

  patchMethod(window, 'fetch', (args) => {
    if (typeof Request === 'function' && args[0] instanceof Request) {
      const mapped = mapUrl(args[0].url);
      if (mapped !== args[0].url) args[0] = new Request(mapped, args[0]);
      return args;
    }
    return first(args);
  });
  patchMethod(window.XMLHttpRequest && XMLHttpRequest.prototype, 'open', (args) => {
    args[1] = mapUrl(args[1]);
    return args;
  });
  patchMethod(window.Navigator && Navigator.prototype, 'sendBeacon', first);
  patchMethod(window.History && History.prototype, 'pushState', (args) => {
    args[2] = mapUrl(args[2]);
    return args;
  });
  patchMethod(window.History && History.prototype, 'replaceState', (args) => {
    args[2] = mapUrl(args[2]);
    return args;
  });
  for (const name of ['WebSocket', 'EventSource', 'Worker', 'SharedWorker']) patchConstructor(name, 0);

  const URL_SETTERS = [
    ['HTMLAnchorElement', 'href'], ['HTMLAreaElement', 'href'], ['HTMLLinkElement', 'href'], ['HTMLBaseElement', 'href'],
    ['HTMLImageElement', 'src'], ['HTMLScriptElement', 'src'], ['HTMLIFrameElement', 'src'], ['HTMLFrameElement', 'src'],
    ['HTMLEmbedElement', 'src'], ['HTMLSourceElement', 'src'], ['HTMLTrackElement', 'src'], ['HTMLMediaElement', 'src'],
    ['HTMLInputElement', 'src'], ['HTMLFormElement', 'action'], ['HTMLButtonElement', 'formAction'],
    ['HTMLInputElement', 'formAction'], ['HTMLVideoElement', 'poster'], ['HTMLObjectElement', 'data'],
  ];
  for (const [iface, prop] of URL_SETTERS) patchSetter(iface, prop, mapUrl);
  patchSetter('HTMLImageElement', 'srcset', mapList);
  patchSetter('HTMLSourceElement', 'srcset', mapList);

  const URL_ATTRIBUTES = new Set(['href', 'src', 'action', 'formaction', 'poster', 'data', 'xlink:href']);
  const attributeArgs = (name, value) => {
    const n = typeof name === 'string' ? name.toLowerCase() : name;
    if (URL_ATTRIBUTES.has(n)) return mapUrl(value);
    if (n === 'srcset' || n === 'imagesrcset') return mapList(value);
    return value;
  };
  patchMethod(window.Element && Element.prototype, 'setAttribute', (args) => {
    args[1] = attributeArgs(args[0], args[1]);
    return args;
  });
  patchMethod(window.Element && Element.prototype, 'setAttributeNS', (args) => {
    args[2] = attributeArgs(args[1], args[2]);
    return args;
  });

  // A service worker of the site would capture the proxy host beyond the
  // session (the proxy refuses the script too).
  const swProto = window.ServiceWorkerContainer && ServiceWorkerContainer.prototype;
  const sw = swProto && Object.getOwnPropertyDescriptor(swProto, 'register');
  if (sw && typeof sw.value === 'function' && sw.configurable) {
    sw.value = disguise(sw.value, {
      apply() {
        return Promise.reject(new DOMException('Service workers are not available through the co-browsing proxy.', 'SecurityError'));
      },
    });
    Object.defineProperty(swProto, 'register', sw);
  }

  // Navigations the patches cannot see (location assignment): redirected
  // into the proxy when they name an upstream.
  if (window.navigation && typeof navigation.addEventListener === 'function') {
    navigation.addEventListener('navigate', (event) => {
      const url = event.destination && event.destination.url;
      const mapped = mapUrl(url);
      if (mapped !== url && event.cancelable && !event.formData) {
        event.preventDefault();
        location.assign(mapped);
      }
    });
  }

  // Inside the operator console the site's top document is a frame: links
  // and forms aimed at `_top` (or `_parent` from the site's top) would
  // replace the console. They are aimed at the site's top frame instead:
  // the console's content frame, which the console (on an origin of its own,
  // so a cross-origin parent) names `cobrowse-content`.
  const siteTop = (function () {
    let w = window;
    try {
      while (w.parent !== w) {
        if (w.parent.location.pathname.indexOf(CONFIG.prefix + 'console') === 0) return w;
        w = w.parent;
      }
    } catch (e) {
      // A cross-origin ancestor: the console's, if it named this frame so.
      return w.name === 'cobrowse-content' ? w : null;
    }
    return null;
  })();

  function retarget(target) {
    const t = (target || '').toLowerCase();
    if (t !== '_top' && !(t === '_parent' && window.parent !== window && window.parent === (siteTop && siteTop.parent))) {
      return null;
    }
    if (siteTop === window) return '_self';
    if (!siteTop.name) siteTop.name = 'cobrowse-site';
    return siteTop.name;
  }

  function baseTarget() {
    const base = document.querySelector('base[target]');
    return base ? base.getAttribute('target') : '';
  }

  if (siteTop) {
    window.addEventListener('click', (event) => {
      const link = event.target && event.target.closest && event.target.closest('a[href], area[href]');
      if (!link) return;
      const to = retarget(link.getAttribute('target') || baseTarget());
      if (to) link.setAttribute('target', to);
    }, true);
    window.addEventListener('submit', (event) => {
      const form = event.target;
      const submitter = event.submitter;
      const to = retarget((submitter && submitter.getAttribute('formtarget')) || form.getAttribute('target') || baseTarget());
      if (!to) return;
      if (submitter && submitter.hasAttribute('formtarget')) submitter.setAttribute('formtarget', to);
      else form.setAttribute('target', to);
    }, true);
    patchMethod(window, 'open', (args) => {
      args[0] = mapUrl(args[0]);
      const to = retarget(args[1]);
      if (to) args[1] = to;
      return args;
    });
  } else {
    patchMethod(window, 'open', first);
  }

  return { mapUrl, mapList };
})();
