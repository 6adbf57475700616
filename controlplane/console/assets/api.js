// The console's REST client: the same API a script uses, with the
// session cookie instead of a bearer header. Every write carries the
// session's CSRF token; a GET's ETag is kept so a later PUT or DELETE can
// send If-Match (the API answers 412 when someone else changed the
// resource in between, once it supports it).

let csrf = '';
let onUnauthenticated = () => {};

export function setCSRF(token) { csrf = token || ''; }
export function setOnUnauthenticated(fn) { onUnauthenticated = fn; }

// APIError is an ErrorResponse ({type, code, message, doc_url}) with the
// status, the field it names and, for 409 resource_locked, Retry-After.
export class APIError extends Error {
  constructor(res, body) {
    const b = body && typeof body === 'object' ? body : {};
    super(b.message || `The server answered ${res.status} ${res.statusText}.`);
    this.status = res.status;
    this.code = b.code || '';
    this.type = b.type || '';
    this.docURL = b.doc_url || '';
    this.field = b.param || b.field || fieldOf(this.message);
    const ra = res.headers.get('Retry-After');
    this.retryAfter = ra !== null && /^\d+$/.test(ra) ? Number(ra) : null;
  }
}

// fieldOf finds the field path an API message starts with, such as
// rules[2].port or name: the API's messages name their field first.
const fieldRe = /^((?:rules|prefixes|sites)\[\d+\](?:\.[a-z_]+)?|name|description|rules|prefixes|sites)(?![\w[])/;
export function fieldOf(message) {
  const m = fieldRe.exec(message || '');
  return m ? m[1] : '';
}

export async function request(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrf;
  if (opts.ifMatch) headers['If-Match'] = opts.ifMatch;
  const res = await fetch(path, {
    method, headers, credentials: 'same-origin', cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: the status speaks */ }
  if (!res.ok) {
    const err = new APIError(res, data);
    if (res.status === 401 && !opts.noAuthRedirect) onUnauthenticated(err);
    throw err;
  }
  return { data, etag: res.headers.get('ETag'), res };
}

export const get = (path) => request('GET', path);

// nextLink returns the URL of a Link header's rel="next", or ''.
export function nextLink(header) {
  for (const part of (header || '').split(',')) {
    const m = /<([^>]*)>\s*;(?:[^,]*;)?\s*rel="?next"?/.exec(part);
    if (m) return m[1];
  }
  return '';
}

// listAll reads a whole collection: one bare array, or pages of `limit`
// followed through Link rel="next" where the API pages. An API whose pages
// are smaller refuses the large limit: then it asks again with 100.
export async function listAll(path, limit = 1000, maxPages = 1000) {
  let url = `${path}${path.includes('?') ? '&' : '?'}limit=${limit}`;
  const all = [];
  for (let i = 0; url && i < maxPages; i++) {
    let got;
    try {
      got = await request('GET', url);
    } catch (e) {
      if (i === 0 && limit > 100 && (e.status === 400 || e.status === 422)) return listAll(path, 100, maxPages);
      throw e;
    }
    if (Array.isArray(got.data)) all.push(...got.data);
    const next = nextLink(got.res.headers.get('Link'));
    url = next && next !== url ? next : '';
  }
  return all;
}
