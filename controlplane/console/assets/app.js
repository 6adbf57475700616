// The operator console: one page, views chosen by the URL's fragment
// (#/fleet, #/groups/ID, ...), built with the DOM (text is always set as
// text, never parsed as HTML). Live status is polling, paused while the
// tab is hidden. The REST client is api.js.

import { request, get, listAll, nextLink, setCSRF, setOnUnauthenticated, APIError } from './api.js';

const $ = (sel) => document.querySelector(sel);
const main = $('#main');

// h builds an element: h('a', {href: '#/x'}, 'text', child...).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const or = (items, none) => (items.length ? items : [none]);
const badge = (state) => h('span', { class: `badge st-${state}` }, state || 'unknown');
const announce = (msg) => { $('#live').textContent = msg; };
const fmtTime = (t) => (t ? new Date(t).toLocaleString() : '—');
function ago(t) {
  if (!t) return 'never';
  const s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

// poll runs fn now and then every ms (a number, or a function giving
// it) while the view lives, skipping ticks while the tab is hidden. The
// view's cleanup stops it.
function poll(view, fn, every) {
  let timer = null;
  const tick = async () => {
    if (view.stopped) return;
    if (!document.hidden) {
      try { await fn(); view.clearError?.(); } catch (e) { if (!(e instanceof APIError && e.status === 401)) view.showError?.(e); }
    }
    if (!view.stopped) timer = setTimeout(tick, typeof every === 'function' ? every() : every);
  };
  tick();
  view.cleanups.push(() => clearTimeout(timer));
}

// --- session ---

let session = null;

async function loadSession() {
  try {
    const { data } = await request('GET', '/console/session', undefined, { noAuthRedirect: true });
    session = data;
    setCSRF(data.csrf_token);
    return true;
  } catch {
    session = null;
    return false;
  }
}

function showChrome(on) {
  $('#nav').hidden = !on;
  $('#logout').hidden = !on;
  $('#who').hidden = !on;
  if (on) $('#who').textContent = `Organisation ${session.org}`;
}

async function login(body) {
  const { data } = await request('POST', '/console/login', body, { noAuthRedirect: true });
  session = data;
  setCSRF(data.csrf_token);
}

// loginView shows the login form, with why (an error) or a note.
function loginView(view, message, note) {
  showChrome(false);
  const info = h('p', { class: 'banner info', role: 'status', id: 'login-note', hidden: !note }, note || '');
  const err = h('p', { class: 'banner error', role: 'alert', id: 'login-error', hidden: !message }, message || '');
  const token = h('textarea', { id: 'token', name: 'token', required: true, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'token-hint' });
  const form = h('form', { class: 'login', id: 'login-form', onsubmit: async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    try {
      await login({ token: token.value.trim() });
      location.hash = '#/fleet';
      route();
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
      token.focus();
    }
  } },
  h('h1', {}, 'Log in to Rampart'),
  info, err,
  h('div', { class: 'field' },
    h('label', { for: 'token' }, 'Bearer token'),
    token,
    h('p', { class: 'hint', id: 'token-hint' },
      'Paste a token (', h('code', {}, 'rampart-controlplane token --org ORG'),
      ', or one from your identity provider), or open the one-time link that ',
      h('code', {}, 'rampart-controlplane login-url --org ORG'), ' prints.')),
  h('button', { type: 'submit' }, 'Log in'));
  main.replaceChildren(form);
  token.focus();
}

async function logout() {
  try { await request('POST', '/console/logout'); } catch { /* the session is gone either way */ }
  session = null;
  setCSRF('');
  history.replaceState(null, '', `${location.pathname}#/login`);
  route(null, 'You are logged out; the session is ended on the server too.');
}

// --- views ---

// Each view gets a fresh `view` object; leaving it runs its cleanups.
let current = null;

function newView() {
  if (current) {
    current.stopped = true;
    current.cleanups.forEach((f) => f());
  }
  current = { stopped: false, cleanups: [] };
  return current;
}

function errorBanner(view) {
  const el = h('p', { class: 'banner error', role: 'alert', hidden: true });
  view.showError = (e) => { el.textContent = e.message; el.hidden = false; };
  view.clearError = () => { el.hidden = true; };
  return el;
}

function setNav(which) {
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === which) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// --- fleet ---

const STATES = ['in_sync', 'syncing', 'failed', 'offline', 'unknown', 'decommissioning'];
const fleetState = { filter: '', search: '', page: 0, pageSize: 50 };

function fleetView(view) {
  setNav('fleet');
  let sites = [];
  const counts = h('ul', { class: 'counts', id: 'state-counts', 'aria-label': 'Sites per state' });
  const filter = h('select', { id: 'state-filter', onchange: () => { fleetState.filter = filter.value; fleetState.page = 0; render(); } },
    h('option', { value: '' }, 'every state'), STATES.map((s) => h('option', { value: s }, s)));
  filter.value = fleetState.filter;
  const search = h('input', { id: 'site-search', type: 'search', placeholder: 'site_…', value: fleetState.search,
    oninput: () => { fleetState.search = search.value.trim(); fleetState.page = 0; render(); } });
  const tbody = h('tbody');
  const summary = h('span', { id: 'fleet-range' });
  const prev = h('button', { type: 'button', class: 'secondary', onclick: () => { fleetState.page--; render(); } }, 'Previous');
  const next = h('button', { type: 'button', class: 'secondary', onclick: () => { fleetState.page++; render(); } }, 'Next');
  const updated = h('span', { class: 'hint' });
  main.replaceChildren(
    h('h1', {}, 'Fleet'), errorBanner(view), counts,
    h('div', { class: 'toolbar', role: 'search' },
      h('div', { class: 'field' }, h('label', { for: 'state-filter' }, 'State'), filter),
      h('div', { class: 'field' }, h('label', { for: 'site-search' }, 'Search by site id'), search),
      updated),
    h('div', { class: 'table-wrap' }, h('table', { id: 'fleet-table' },
      h('caption', { class: 'visually-hidden' }, 'Sites'),
      h('thead', {}, h('tr', {}, ['Site', 'State', 'Online', 'Desired', 'Applied', 'Last seen', 'Last error', 'Agent', 'RouterOS']
        .map((c) => h('th', { scope: 'col' }, c)))),
      tbody)),
    h('nav', { class: 'pager', 'aria-label': 'Pages of sites' }, prev, summary, next));

  function render() {
    const n = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const s of sites) n[s.state] = (n[s.state] || 0) + 1;
    counts.replaceChildren(...[['', 'all', sites.length], ...STATES.map((s) => [s, s, n[s]])].map(([v, label, c]) =>
      h('li', {}, h('button', { type: 'button', 'aria-pressed': String(fleetState.filter === v), 'data-state': label,
        onclick: () => { fleetState.filter = v; filter.value = v; fleetState.page = 0; render(); } },
      h('span', { class: 'n' }, c.toLocaleString()), label))));
    const q = fleetState.search.toLowerCase();
    const shown = sites.filter((s) => (!fleetState.filter || s.state === fleetState.filter) && (!q || s.id.toLowerCase().includes(q)));
    const pages = Math.max(1, Math.ceil(shown.length / fleetState.pageSize));
    fleetState.page = Math.min(Math.max(0, fleetState.page), pages - 1);
    const from = fleetState.page * fleetState.pageSize;
    const slice = shown.slice(from, from + fleetState.pageSize);
    tbody.replaceChildren(...slice.map((s) => h('tr', { 'data-site': s.id },
      h('th', { scope: 'row' }, h('a', { href: `#/sites/${encodeURIComponent(s.id)}` }, s.id)),
      h('td', { 'data-col': 'state' }, badge(s.state)),
      h('td', {}, s.online ? 'online' : 'offline'),
      h('td', { class: 'num' }, s.desired_revision),
      h('td', { class: 'num' }, s.applied_revision),
      h('td', { title: fmtTime(s.last_seen) }, ago(s.last_seen)),
      h('td', { class: 'err' }, s.last_error || ''),
      h('td', {}, s.agent_version || '—'),
      h('td', {}, s.routeros_version || '—'))));
    if (!slice.length) tbody.replaceChildren(h('tr', {}, h('td', { colspan: 9 }, sites.length ? 'No site matches.' : 'No sites yet: a site appears once a group or list names it, or its agent reports.')));
    summary.textContent = shown.length ? `Sites ${(from + 1).toLocaleString()}–${(from + slice.length).toLocaleString()} of ${shown.length.toLocaleString()}` : '0 sites';
    prev.disabled = fleetState.page === 0;
    next.disabled = fleetState.page >= pages - 1;
  }
  poll(view, async () => {
    sites = await listAll('/vpc/sites');
    sites.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    render();
  }, () => (sites.length > 2000 ? 10000 : 3000)); // a large fleet's list is megabytes: fetch it less often
  render();
}

// --- a site ---

async function siteView(view, id) {
  setNav('fleet');
  const props = h('div'), rest = h('div');
  // The history keeps its own elements across polls, so its button keeps
  // the focus; it reads one page of the newest, longer on request (a
  // site keeps 100).
  let historyLimit = 20;
  const historyBody = h('tbody');
  const older = h('button', { type: 'button', class: 'secondary', id: 'history-older', hidden: true }, 'Show older transitions');
  const history = h('section', { id: 'site-history', 'aria-labelledby': 'site-history-title' },
    h('h2', { id: 'site-history-title' }, 'State history'),
    h('p', { class: 'meta' }, 'Newest first: each change of the site\'s state or presence, with its revisions after it.'),
    h('div', { class: 'table-wrap' }, h('table', { id: 'history-table' },
      h('caption', { class: 'visually-hidden' }, 'State transitions, newest first'),
      h('thead', {}, h('tr', {}, ['When', 'From', 'To', 'Desired', 'Applied', 'Online', 'Error'].map((c) => h('th', { scope: 'col' }, c)))),
      historyBody)),
    older);
  main.replaceChildren(h('p', {}, h('a', { href: '#/fleet' }, '← Fleet')), h('h1', {}, id), errorBanner(view), props, history, rest);
  const path = `/vpc/sites/${encodeURIComponent(id)}`;
  const load = async () => {
    await loadProtocols();
    const [{ data: s }, groups, lists, policy, hist] = await Promise.all([
      get(path), listAll(KINDS.groups.path), listAll(KINDS.lists.path),
      get(`${path}/policy`).then((r) => r.data).catch((e) => (e.status === 404 ? null : Promise.reject(e))),
      get(`${path}/history?limit=${historyLimit}`)]);
    const rows = [['State', badge(s.state)], ['Online', s.online ? 'online' : 'offline'], ['Last seen', `${ago(s.last_seen)} (${fmtTime(s.last_seen)})`],
      ['Desired revision', s.desired_revision], ['Applied revision', s.applied_revision], ['Last error', s.last_error || '—'],
      ['Agent', s.agent_version || '—'], ['RouterOS', s.routeros_version || '—'], ['Board', s.board || '—']];
    props.replaceChildren(h('dl', { class: 'props', id: 'site-props' }, rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
    historyBody.replaceChildren(...or(hist.data.map((t) => h('tr', { 'data-seq': t.seq },
      h('td', {}, h('time', { datetime: t.at, title: fmtTime(t.at) }, ago(t.at))),
      h('td', { 'data-col': 'from' }, badge(t.from)), h('td', { 'data-col': 'to' }, badge(t.to)),
      h('td', { class: 'num' }, t.desired_revision), h('td', { class: 'num' }, t.applied_revision),
      h('td', {}, t.online ? 'online' : 'offline'), h('td', { class: 'err' }, t.error || ''))),
    h('tr', {}, h('td', { colspan: 7 }, 'No transitions yet.'))));
    older.hidden = !nextLink(hist.res.headers.get('Link')) || historyLimit >= 100;
    const mine = (k, items) => items.filter((r) => (r.sites || []).includes(id)).map((r) =>
      h('li', {}, h('a', { href: `#/${k}/${r.id}` }, r.name), ' ', badge(r.status)));
    rest.replaceChildren(
      h('h2', {}, 'Security groups attached'), h('ul', { id: 'site-groups' }, or(mine('groups', groups), h('li', {}, 'none'))),
      h('h2', {}, 'Prefix lists attached directly'), h('ul', { id: 'site-lists' }, or(mine('lists', lists), h('li', {}, 'none'))),
      policyView(policy));
  };
  older.addEventListener('click', () => {
    historyLimit = Math.min(100, historyLimit + 40);
    load().catch((e) => view.showError?.(e));
  });
  poll(view, load, 3000);
}

// policyView shows a site's compiled policy as published to its router:
// inbound then outbound rules in order, each with its group, and the
// address lists the prefix lists become.
function policyView(p) {
  if (!p) return h('section', { id: 'site-policy' }, h('h2', {}, 'Compiled policy'), h('p', {}, 'No policy: nothing was ever attached to this site.'));
  const rules = (p.security_groups || []).flatMap((g) => (g.rules || []).map((r) => ({ ...r, group: g })));
  rules.sort(KINDS.groups.sortRows);
  return h('section', { id: 'site-policy' },
    h('h2', {}, `Compiled policy, revision ${p.revision}`),
    h('p', { class: 'meta' }, 'As published to the router: the groups\' allow rules in order (chains rampart-in and rampart-out), then the address lists. ',
      h('span', { class: 'mono' }, p.hash || '')),
    h('div', { class: 'table-wrap' }, h('table', { id: 'policy-rules' },
      h('thead', {}, h('tr', {}, ['Direction', 'Order', 'Protocol', 'Port', 'Address', 'Description', 'Group'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rules.length ? rules.map((r) => h('tr', {},
        h('td', {}, r.direction), h('td', {}, r.order), h('td', {}, protoName(r.protocol)), h('td', {}, r.port || '—'),
        h('td', {}, /^prfx_lst_/.test(r.address) ? `rampart-${r.address}` : r.address), h('td', {}, r.description),
        h('td', {}, h('a', { href: `#/groups/${r.group.id}` }, r.group.name)))) : h('tr', {}, h('td', { colspan: 7 }, 'No rules.'))))),
    h('h3', {}, 'Address lists'),
    h('ul', { id: 'policy-lists' }, or((p.prefix_lists || []).map((l) => h('li', {}, h('a', { href: `#/lists/${l.id}` }, l.name), ` (rampart-${l.id}): `,
      h('span', { class: 'mono' }, (l.cidrs || []).join(', ')))), h('li', {}, 'none'))));
}

// --- security groups and prefix lists ---

let protocols = null;
let services = [];
async function loadProtocols() {
  if (!protocols) {
    [protocols, services] = await Promise.all([get('/vpc/reference/protocols').then((r) => r.data),
      get('/vpc/reference/services').then((r) => r.data).catch(() => [])]);
  }
  return protocols;
}
const protoName = (n) => {
  const p = (protocols || []).find((x) => x.number === n);
  return p ? `${p.name} (${n})` : String(n);
};

// KINDS describes the two editable resources: their path, their row
// collection and its columns. Views and the editor are shared.
const KINDS = {
  groups: {
    path: '/vpc/security-groups', title: 'Security groups', one: 'security group', rowsKey: 'rules', rowsTitle: 'Rules',
    columns: [
      { key: 'direction', label: 'Direction', type: 'select', options: () => [['inbound', 'inbound'], ['outbound', 'outbound']], def: 'inbound' },
      { key: 'order', label: 'Order', type: 'number', def: '' },
      { key: 'protocol', label: 'Protocol', type: 'select', number: true, def: 6,
        options: () => (protocols || []).map((p) => [p.number, `${p.name} (${p.number})`]), show: protoName },
      { key: 'port', label: 'Port', type: 'text', def: '', placeholder: '443, 8000-8080' },
      { key: 'address', label: 'Address', type: 'text', def: '0.0.0.0/0', placeholder: 'CIDR or prfx_lst_…', list: 'prefix-list-ids' },
      { key: 'description', label: 'Description', type: 'text', def: '' },
    ],
    sortRows: (a, b) => (a.direction === b.direction ? a.order - b.order : a.direction === 'inbound' ? -1 : 1),
  },
  lists: {
    path: '/vpc/prefix-lists', title: 'Prefix lists', one: 'prefix list', rowsKey: 'prefixes', rowsTitle: 'Prefixes',
    columns: [
      { key: 'cidr', label: 'CIDR', type: 'text', def: '', placeholder: '203.0.113.0/24' },
      { key: 'description', label: 'Description', type: 'text', def: '' },
    ],
  },
};

function listView(view, kind) {
  const k = KINDS[kind];
  setNav(kind);
  const tbody = h('tbody');
  main.replaceChildren(
    h('h1', {}, k.title),
    h('div', { class: 'actions' }, h('a', { class: 'button', href: `#/${kind}/new`, id: 'new-resource' }, `New ${k.one}`)),
    errorBanner(view),
    h('div', { class: 'table-wrap' }, h('table', { id: `${kind}-table` },
      h('caption', { class: 'visually-hidden' }, k.title),
      h('thead', {}, h('tr', {}, ['Name', 'Status', k.rowsTitle, 'Sites', 'Id'].map((c) => h('th', { scope: 'col' }, c)))),
      tbody)));
  poll(view, async () => {
    const items = await listAll(k.path);
    tbody.replaceChildren(...items.map((r) => h('tr', { 'data-id': r.id },
      h('th', { scope: 'row' }, h('a', { href: `#/${kind}/${r.id}` }, r.name)),
      h('td', { 'data-col': 'status' }, badge(r.status)),
      h('td', { class: 'num' }, (r[k.rowsKey] || []).length),
      h('td', { class: 'num' }, (r.sites || []).length),
      h('td', { class: 'mono' }, r.id))));
    if (!items.length) tbody.replaceChildren(h('tr', {}, h('td', { colspan: 5 }, `No ${k.one} yet.`)));
  }, 2000);
}

// sitesOf returns the states of some sites: one GET each for up to ten,
// else the whole (paged) list.
async function sitesOf(ids) {
  if (ids.length <= 10) {
    return Promise.all(ids.map((id) => get(`/vpc/sites/${encodeURIComponent(id)}`).then((r) => r.data)
      .catch((e) => ({ id, state: 'unknown', last_error: e.status === 404 ? 'not known yet' : e.message }))));
  }
  const all = new Map((await listAll('/vpc/sites')).map((s) => [s.id, s]));
  return ids.map((id) => all.get(id) || { id, state: 'unknown' });
}

// detailView shows one group or list; first (the answer of a write) is
// shown at once so a just-saved resource shows `syncing` before any poll.
function detailView(view, kind, id, first) {
  const k = KINDS[kind];
  setNav(kind);
  const title = h('h1', { id: 'resource-name' }, first ? first.name : id);
  const status = h('span', { id: 'resource-status', 'aria-live': 'polite' });
  const progress = h('p', { id: 'sync-progress', class: 'meta' });
  const body = h('div');
  const note = h('div', { id: 'action-note' });
  let etag = null;
  let syncingSince = null;
  let lastStatus = null;
  // Deleting asks once more, in the page (a native confirm() would block
  // the polling and cannot be styled or announced).
  const del = h('button', { type: 'button', class: 'danger', id: 'delete-resource', onclick: () => {
    const keep = h('button', { type: 'button', class: 'secondary', onclick: () => { note.replaceChildren(); del.focus(); } }, 'Keep it');
    note.replaceChildren(h('div', { class: 'banner info', role: 'alertdialog', 'aria-labelledby': 'confirm-text' },
      h('p', { id: 'confirm-text' }, `Delete ${k.one} "${title.textContent}"? Its ${k.rowsKey} leave its sites.`),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'danger', id: 'confirm-delete', onclick: async () => {
        try {
          await request('DELETE', `${k.path}/${id}`, undefined, { ifMatch: etag });
          announce(`${k.one} deleted`);
          location.hash = `#/${kind}`;
        } catch (e) { note.replaceChildren(writeErrorBanner(e, k)); }
      } }, 'Delete'), keep)));
    keep.focus();
  } }, 'Delete');
  main.replaceChildren(
    h('p', {}, h('a', { href: `#/${kind}` }, `← ${k.title}`)),
    title, h('p', { class: 'meta' }, 'Status ', status, ' ', h('span', { class: 'mono' }, id)), progress,
    h('div', { class: 'actions' }, h('a', { class: 'button', href: `#/${kind}/${id}/edit`, id: 'edit-resource' }, 'Edit'), del),
    note, errorBanner(view), body);

  function render(r, sites) {
    title.textContent = r.name;
    status.replaceChildren(badge(r.status));
    if (r.status === 'syncing' && lastStatus !== 'syncing') syncingSince = Date.now();
    if (r.status !== lastStatus) {
      if (r.status === 'syncing') progress.textContent = `Deploying to ${r.sites.length} site(s) since ${new Date(syncingSince).toLocaleTimeString()}…`;
      else if (r.status === 'active' && syncingSince) progress.textContent = `Active since ${new Date().toLocaleTimeString()}: every site confirmed it.`;
      else if (r.status === 'failed') progress.textContent = 'Failed: a site reported an error or did not confirm in time; see the sites below. The next save deploys again.';
      else progress.textContent = '';
      if (lastStatus) announce(`${k.one} ${r.status}`);
      lastStatus = r.status;
    }
    const rows = [...(r[k.rowsKey] || [])];
    if (k.sortRows) rows.sort(k.sortRows);
    const children = [
      r.description ? h('p', {}, r.description) : null,
      h('h2', {}, k.rowsTitle),
      h('div', { class: 'table-wrap' }, h('table', { id: 'rows-table' },
        h('thead', {}, h('tr', {}, k.columns.map((c) => h('th', { scope: 'col' }, c.label)))),
        h('tbody', {}, rows.length ? rows.map((row) => h('tr', {}, k.columns.map((c) => {
          const v = row[c.key];
          if (c.key === 'address' && /^prfx_lst_/.test(v)) return h('td', {}, h('a', { href: `#/lists/${v}` }, v));
          return h('td', {}, c.show ? c.show(v) : v === '' ? '—' : v);
        }))) : h('tr', {}, h('td', { colspan: k.columns.length }, `No ${k.rowsKey}.`))))),
      h('h2', {}, kind === 'lists' ? 'Sites it is attached to directly' : 'Sites'),
      h('div', { class: 'table-wrap' }, h('table', { id: 'sites-table' },
        h('thead', {}, h('tr', {}, ['Site', 'State', 'Online', 'Applied / desired', 'Last error'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, sites.length ? sites.map((s) => h('tr', { 'data-site': s.id },
          h('th', { scope: 'row' }, h('a', { href: `#/sites/${encodeURIComponent(s.id)}` }, s.id)),
          h('td', { 'data-col': 'state' }, badge(s.state)),
          h('td', {}, s.online ? 'online' : 'offline'),
          h('td', { class: 'num' }, `${s.applied_revision ?? '—'} / ${s.desired_revision ?? '—'}`),
          h('td', { class: 'err' }, s.last_error || ''))) : h('tr', {}, h('td', { colspan: 5 }, 'No sites.'))))),
    ];
    body.replaceChildren(...children.filter(Boolean));
  }
  if (first) render(first, first.sites.map((s) => ({ id: s, state: first.status === 'syncing' ? 'syncing' : 'unknown' })));
  let many = false;
  poll(view, async () => {
    await loadProtocols();
    const got = await get(`${k.path}/${id}`);
    etag = got.etag;
    many = (got.data.sites || []).length > 10;
    render(got.data, await sitesOf(got.data.sites || []));
  // Every second while it syncs; many sites means reading the whole
  // fleet, so less often.
  }, () => (many ? 5000 : lastStatus === 'syncing' ? 1000 : 3000));
}

// writeErrorBanner words an error of a write: the API's message, plus
// when to retry (409 while syncing) or the offer to reload (412).
function writeErrorBanner(e, k, onReload) {
  if (!(e instanceof APIError)) return h('p', { class: 'banner error', role: 'alert' }, `The request failed: ${e.message}`);
  const parts = [e.message];
  if (e.code === 'resource_locked' && e.retryAfter !== null) {
    const at = new Date(Date.now() + e.retryAfter * 1000);
    parts.push(` Save again after ${at.toLocaleTimeString()} (in ${e.retryAfter} s).`);
  }
  const p = h('p', { class: 'banner error', role: 'alert', id: 'write-error', 'data-code': e.code }, parts.join(''));
  if (e.status === 412 || e.code === 'precondition_failed') {
    p.textContent = `Someone else changed this ${k.one} since you opened it. `;
    if (onReload) p.append(h('button', { type: 'button', class: 'secondary', onclick: onReload }, 'Reload their version'));
  }
  return p;
}

async function editorView(view, kind, id) {
  const k = KINDS[kind];
  setNav(kind);
  main.replaceChildren(h('p', {}, 'Loading…'));
  await loadProtocols();
  let cur = { name: '', description: '', sites: [], [k.rowsKey]: [] };
  let etag = null;
  let restoring = null;
  if (id) {
    const got = await get(`${k.path}/${id}`);
    cur = got.data;
    etag = got.etag; // If-Match: the version being replaced, also when restoring an older one
    if (restoreDraft && restoreDraft.id === id) {
      restoring = restoreDraft;
      cur = { ...cur, ...restoreDraft.body };
    }
    restoreDraft = null;
  }
  const prefixLists = kind === 'groups' ? await listAll(KINDS.lists.path).catch(() => []) : [];
  if (view.stopped) return;
  const fieldErr = (path) => h('p', { class: 'field-error', id: `err-${path}`, 'data-error-for': path, hidden: true });
  const name = h('input', { id: 'f-name', 'data-field': 'name', value: cur.name, required: true, 'aria-describedby': 'err-name' });
  const desc = h('textarea', { id: 'f-description', 'data-field': 'description', rows: 2, 'aria-describedby': 'err-description' });
  desc.value = cur.description || '';
  const sites = h('textarea', { id: 'f-sites', 'data-field': 'sites', rows: 2, 'aria-describedby': 'sites-hint err-sites' });
  sites.value = (cur.sites || []).join('\n');
  const rowsBody = h('tbody');
  const summary = h('div', { id: 'form-errors' });
  const save = h('button', { type: 'submit', id: 'save-resource' }, id ? 'Save' : `Create ${k.one}`);

  function addRow(row) {
    const i = rowsBody.querySelectorAll('tr[data-row]').length;
    const tr = h('tr', { 'data-row': i });
    let service = null;
    if (kind === 'groups') {
      // AWS's "Type": picking a service fills protocol and port; editing
      // either shows Custom again. Not sent: the API keeps protocol and port.
      service = h('select', { 'aria-label': `Type of rule ${i + 1}`, 'data-key': 'service', onchange: () => {
        const sv = services.find((x) => x.name === service.value);
        if (!sv) return;
        tr.querySelector('[data-key="protocol"]').value = String(sv.protocol);
        tr.querySelector('[data-key="port"]').value = sv.port;
      } }, h('option', { value: '' }, 'Custom'), services.map((sv) => h('option', { value: sv.name }, `${sv.name} (${protoName(sv.protocol).split(' ')[0]} ${sv.port})`)));
      const match = services.find((sv) => sv.protocol === Number(row.protocol) && sv.port === row.port);
      service.value = match ? match.name : '';
      tr.append(h('td', { class: 'service' }, service));
    }
    for (const c of k.columns) {
      const path = `${k.rowsKey}[${i}].${c.key}`;
      const label = `${c.label} of ${k.rowsKey === 'rules' ? 'rule' : 'prefix'} ${i + 1}`;
      let input;
      if (c.type === 'select') {
        input = h('select', {}, c.options().map(([v, t]) => h('option', { value: String(v) }, t)));
        input.value = String(row[c.key] ?? c.def);
      } else {
        input = h('input', { type: c.type === 'number' ? 'number' : 'text', placeholder: c.placeholder, list: c.list });
        input.value = row[c.key] ?? c.def;
      }
      Object.assign(input.dataset, { field: path, key: c.key });
      if (service && (c.key === 'protocol' || c.key === 'port')) {
        input.addEventListener(c.key === 'port' ? 'input' : 'change', () => {
          const p = Number(tr.querySelector('[data-key="protocol"]').value);
          const port = tr.querySelector('[data-key="port"]').value;
          const m = services.find((sv) => sv.protocol === p && sv.port === port);
          service.value = m ? m.name : '';
        });
      }
      input.setAttribute('aria-label', label);
      input.setAttribute('aria-describedby', `err-row-${i}`);
      tr.append(h('td', { class: c.key }, input));
    }
    tr.append(h('td', {}, h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove row ${i + 1}`,
      onclick: () => { const rows = readRows(); rows.splice(i, 1); setRows(rows); $('#add-row').focus(); } }, 'Remove')));
    // A row's error goes in a full-width row under it, as in AWS's table;
    // showWriteError names the field it is for.
    const err = h('p', { class: 'field-error', id: `err-row-${i}`, 'data-row-error': i, hidden: true });
    rowsBody.append(tr, h('tr', { class: 'row-error', hidden: true }, h('td', { colspan: tr.children.length }, err)));
  }
  function readRows() {
    return [...rowsBody.querySelectorAll('tr[data-row]')].map((tr) => {
      const row = {};
      for (const c of k.columns) {
        const v = tr.querySelector(`[data-key="${c.key}"]`).value;
        row[c.key] = c.type === 'number' || c.number ? (v === '' ? null : Number(v)) : v;
      }
      return row;
    });
  }
  function setRows(rows) { rowsBody.replaceChildren(); rows.forEach(addRow); }
  const initial = [...(cur[k.rowsKey] || [])];
  if (k.sortRows) initial.sort(k.sortRows);
  setRows(initial);

  const nextOrder = () => Math.min(250, Math.max(0, ...readRows().map((r) => r.order || 0)) + 10);
  const form = h('form', { id: 'resource-form', novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    clearErrors();
    const body = {
      name: name.value, description: desc.value === '' ? null : desc.value,
      [k.rowsKey]: readRows(),
      sites: sites.value.split(/[\s,]+/).filter(Boolean),
    };
    save.disabled = true;
    try {
      const { data } = id ? await request('PUT', `${k.path}/${id}`, body, { ifMatch: etag })
        : await request('POST', k.path, body);
      announce(`${k.one} saved; ${data.status}`);
      history.pushState(null, '', `#/${kind}/${data.id}`);
      show(() => detailView(newView(), kind, data.id, data));
    } catch (e) {
      showWriteError(e);
      save.disabled = false;
    }
  } },
  h('div', { class: 'field' }, h('label', { for: 'f-name' }, 'Name'), name, fieldErr('name')),
  h('div', { class: 'field' }, h('label', { for: 'f-description' }, 'Description'), desc, fieldErr('description')),
  h('h2', { id: 'rows-title' }, k.rowsTitle), fieldErr(k.rowsKey),
  h('div', { class: 'table-wrap' }, h('table', { class: 'rules-editor', 'aria-labelledby': 'rows-title' },
    h('thead', {}, h('tr', {}, kind === 'groups' ? h('th', { scope: 'col' }, 'Type') : null,
      k.columns.map((c) => h('th', { scope: 'col' }, c.label)), h('th', {}, h('span', { class: 'visually-hidden' }, 'Actions')))),
    rowsBody)),
  h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', id: 'add-row', onclick: () => {
    const row = Object.fromEntries(k.columns.map((c) => [c.key, c.def]));
    if ('order' in row) row.order = nextOrder();
    addRow(row);
    [...rowsBody.querySelectorAll('tr[data-row]')].pop().querySelector('input, select').focus();
  } }, kind === 'groups' ? 'Add rule' : 'Add prefix')),
  h('div', { class: 'field' }, h('label', { for: 'f-sites' }, 'Sites'), sites,
    h('p', { class: 'hint', id: 'sites-hint' }, 'Site ids (site_…), one per line or separated by commas.'), fieldErr('sites')),
  kind === 'groups' ? h('datalist', { id: 'prefix-list-ids' }, prefixLists.map((l) => h('option', { value: l.id }, l.name))) : null,
  h('div', { class: 'actions' }, save, h('a', { class: 'button secondary', href: id ? `#/${kind}/${id}` : `#/${kind}` }, 'Cancel')));

  function clearErrors() {
    summary.replaceChildren();
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    for (const el of form.querySelectorAll('.field-error')) { el.hidden = true; el.textContent = ''; }
    for (const el of form.querySelectorAll('tr.row-error')) el.hidden = true;
    for (const el of form.querySelectorAll('[data-row-error]')) el.removeAttribute('data-error-for');
  }
  function showWriteError(e) {
    summary.replaceChildren(writeErrorBanner(e, k, () => route()));
    if (!(e instanceof APIError) || !e.field) return;
    // sites[3] and rules[2] name a whole entry: show them at the list's
    // own place or the row's.
    const row = new RegExp(`^${k.rowsKey}\\[(\\d+)\\]`).exec(e.field);
    let at = row && form.querySelector(`[data-row-error="${row[1]}"]`);
    if (at) {
      at.setAttribute('data-error-for', e.field);
      at.closest('tr').hidden = false;
    } else {
      at = form.querySelector(`[data-error-for="${CSS.escape(e.field)}"]`) ||
        form.querySelector(`[data-error-for="${CSS.escape(e.field.replace(/\[\d+\]$/, ''))}"]`);
    }
    if (at) { at.textContent = e.message; at.hidden = false; }
    const input = form.querySelector(`[data-field="${CSS.escape(e.field)}"]`) ||
      (row && form.querySelector(`tr[data-row="${row[1]}"] [data-field]`)) ||
      form.querySelector(`[data-field="${CSS.escape(e.field.replace(/\[\d+\].*$/, ''))}"]`);
    if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
  }
  main.replaceChildren(
    h('p', {}, h('a', { href: id ? `#/${kind}/${id}` : `#/${kind}` }, '← Back')),
    h('h1', {}, id ? `Edit ${k.one} ${cur.name}` : `New ${k.one}`),
    restoring ? h('p', { class: 'banner info', id: 'restoring' }, `Restoring version ${restoring.version} of ${fmtTime(restoring.at)}: review it and save.`) : null,
    summary, form);
  name.focus();
}

// --- audit trail ---

// restoreDraft carries an audit event's body to the editor: restoring a
// version is a PUT of that body through the same editor.
let restoreDraft = null;
const KIND_OF = { security_group: 'groups', prefix_list: 'lists' };

function auditView(view) {
  setNav('audit');
  const tbody = h('tbody');
  let next = '/vpc/audit-events?limit=50';
  const more = h('button', { type: 'button', class: 'secondary', id: 'audit-more', onclick: () => load() }, 'Older events');
  main.replaceChildren(h('h1', {}, 'Audit trail'), errorBanner(view),
    h('p', { class: 'meta' }, 'Every change to security groups and prefix lists, newest first: who made it, and the resource as stored after it.'),
    h('div', { class: 'table-wrap' }, h('table', { id: 'audit-table' },
      h('thead', {}, h('tr', {}, ['When', 'Who', 'Change', 'Resource', 'Version', 'Request id', ''].map((c) => h('th', { scope: 'col' }, c)))), tbody)),
    h('div', { class: 'actions' }, more));
  async function load() {
    const { data, res } = await request('GET', next);
    next = nextLink(res.headers.get('Link'));
    more.hidden = !next;
    for (const e of data || []) {
      const kind = KIND_OF[e.resource_kind];
      const name = e.body && e.body.name ? e.body.name : e.resource_id;
      tbody.append(h('tr', { 'data-event': e.id },
        h('td', { title: e.at }, fmtTime(e.at)), h('td', {}, e.subject || '—'),
        h('td', {}, { POST: 'created', PUT: 'replaced', DELETE: 'deleted' }[e.method] || e.method),
        h('td', {}, kind && e.method !== 'DELETE' ? h('a', { href: `#/${kind}/${e.resource_id}` }, name) : name),
        h('td', { class: 'num' }, e.version), h('td', { class: 'mono' }, e.request_id || ''),
        h('td', {}, kind && e.body ? h('button', { type: 'button', class: 'secondary', 'data-restore': e.version,
          'aria-label': `Restore version ${e.version} of ${name}`, onclick: () => {
            const { id: _i, status: _s, ...body } = e.body;
            if (KINDS[kind].rowsKey in body) body[KINDS[kind].rowsKey] = body[KINDS[kind].rowsKey].map(({ id: _r, ...row }) => row);
            restoreDraft = { id: e.resource_id, body, version: e.version, at: e.at };
            location.hash = `#/${kind}/${e.resource_id}/edit`;
          } }, 'Restore') : '')));
    }
    if (!tbody.children.length) tbody.append(h('tr', {}, h('td', { colspan: 7 }, 'No changes yet.')));
  }
  show(load);
}

// --- routing ---

function show(render) {
  try {
    const p = render();
    if (p && p.catch) p.catch((e) => main.replaceChildren(h('p', { class: 'banner error', role: 'alert' }, e.message)));
  } catch (e) {
    main.replaceChildren(h('p', { class: 'banner error', role: 'alert' }, e.message));
  }
}

async function route(message, note) {
  const hash = location.hash || '#/fleet';
  if (hash.startsWith('#login=')) {
    // A one-time link: take the token out of the address bar and the
    // history first, then spend it.
    const link = hash.slice('#login='.length);
    history.replaceState(null, '', `${location.pathname}#/fleet`);
    try {
      await login({ link });
    } catch (e) {
      loginView(newView(), e.message);
      return;
    }
  }
  if (!session && !(await loadSession())) {
    loginView(newView(), message, note);
    return;
  }
  if (hash === '#/login') { history.replaceState(null, '', `${location.pathname}#/fleet`); }
  showChrome(true);
  const parts = (location.hash || '#/fleet').slice(2).split('/').map(decodeURIComponent);
  const view = newView();
  main.focus({ preventScroll: true });
  const [page, id, action] = parts;
  if (page === 'groups' || page === 'lists') {
    if (id === 'new') return show(() => editorView(view, page, null));
    if (id && action === 'edit') return show(() => editorView(view, page, id));
    if (id) return show(() => detailView(view, page, id, null));
    return show(() => listView(view, page));
  }
  if (page === 'sites' && id) return show(() => siteView(view, id));
  if (page === 'audit') return show(() => auditView(view));
  return show(() => fleetView(view));
}

setOnUnauthenticated((e) => {
  session = null;
  loginView(newView(), e.message);
});
$('#logout').addEventListener('click', logout);
window.addEventListener('hashchange', () => route());
route();
