// The hub's status view: read-only, refreshed every few seconds from the hub's own JSON-RPC API
// with a read token. Everything shown is set as text (never as HTML): spokes are not trusted,
// and the names and versions they report must not run in the operator's browser.
'use strict';

const REFRESH_MS = 5000;
const MAX_SECTOR_ROWS = 200;
const TOKEN_KEY = 'nelumbo-hub-token';

// The token comes in the URL's fragment (never sent to the server, kept out of its logs),
// then lives in this tab's session storage only; the fragment is removed from the address bar.
function takeToken() {
  const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, '', location.pathname);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

let token = takeToken();
let nextId = 1;
let refreshes = 0;

async function call(method, params = []) {
  const response = await fetch('/rpc/v1', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
    body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method: 'Nelumbo.' + method, params }),
  });
  if (response.status === 401 || response.status === 403) {
    throw new AuthError(method + ': the token was refused (' + response.status + ')');
  }
  const body = await response.json();
  if (body.error) {
    throw new Error(method + ': ' + body.error.message);
  }
  return body.result;
}

class AuthError extends Error {}

// el('td', {class: 'num', 'data-x': 1}, 'text', child...): children are text or elements.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headers, rows) {
  return el('table', {},
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows));
}

function fill(section, ...nodes) {
  const body = document.querySelector('#' + section + ' .body');
  body.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined));
}

function ago(unixSeconds) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  return Math.floor(s / 3600) + ' h ago';
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (Number.isInteger(n) ? n : n.toFixed(1)) + ' ' + units[i];
}

function counts(kind, map) {
  const entries = Object.entries(map).filter(([, n]) => n > 0);
  if (entries.length === 0) return el('p', { class: 'muted' }, 'none');
  return el('div', { class: 'counts' }, ...entries.map(([state, n]) =>
    el('span', { class: 'count' }, state + ' ', el('b', { ['data-' + kind + '-state']: state }, n))));
}

function renderTopology(version, miner, head, spokes) {
  document.getElementById('miner').textContent = miner.Actor + ' · ' + bytes(miner.SectorSize) + ' sectors';
  const rows = [
    el('tr', { 'data-process': 'chain' }, el('td', {}, 'chain'), el('td', {}, 'node'),
      el('td', { class: 'ok' }, 'reachable'), el('td', {}, 'head at epoch ' + head.Height), el('td', {}, '')),
    el('tr', { 'data-process': 'hub' }, el('td', {}, 'hub'), el('td', {}, 'sealing, proving, mining'),
      el('td', { class: 'ok' }, 'running'), el('td', {}, version.Version),
      el('td', { class: 'long' }, 'owner ' + miner.Owner + ', worker ' + miner.Worker +
        (miner.Control ? ', control ' + miner.Control : ''))),
  ];
  for (const spoke of spokes) {
    rows.push(el('tr', { 'data-spoke': spoke.Id },
      el('td', {}, 'spoke ' + spoke.Id),
      el('td', {}, (spoke.Services || []).join(', ')),
      el('td', { class: spoke.Online ? 'ok' : 'bad' },
        (spoke.Online ? 'online' : 'offline') + ', heartbeat ' + ago(spoke.LastSeen)),
      el('td', {}, spoke.Version),
      el('td', { class: 'long' }, 'token ' + (spoke.Token || '(operator)') + '; ' +
        ((spoke.PublicAddrs || []).join(' ') || 'no public addresses'))));
  }
  fill('topology',
    el('p', {}, el('b', { 'data-spokes': spokes.length }, spokes.length), ' spokes, ',
      el('b', {}, spokes.filter((s) => s.Online).length), ' online'),
    table(['process', 'services', 'state', 'version', 'details'], rows));
}

function renderSectors(summary, sectors) {
  const total = sectors.length;
  const rows = sectors.slice(-MAX_SECTOR_ROWS).reverse().map((s) =>
    el('tr', { 'data-sector': s.Number },
      el('td', { class: 'num' }, s.Number),
      el('td', { class: s.State === 'Failed' ? 'bad' : '' }, s.State),
      el('td', { class: s.LastError ? 'bad' : 'muted' }, s.LastError || '')));
  fill('sectors',
    el('p', {}, el('b', { 'data-sectors-total': total }, total), ' sectors'),
    counts('sectors', summary),
    total > MAX_SECTOR_ROWS ? el('p', { class: 'muted' }, 'the newest ' + MAX_SECTOR_ROWS + ' of ' + total) : null,
    table(['sector', 'state', 'last error'], rows));
}

function renderProving(info, deadlines) {
  // Deadlines without sectors have nothing to show but their number.
  const shown = deadlines.filter((d) => d.Current || d.Partitions > 0);
  const rows = shown.map((d) =>
    el('tr', { 'data-deadline': d.Index, class: d.Current ? 'warn' : '' },
      el('td', { class: 'num' }, d.Index + (d.Current ? ' (now)' : '')),
      el('td', { class: 'num' }, d.Open),
      el('td', { class: 'num' }, d.Partitions),
      el('td', { class: 'num' }, d.LiveSectors),
      el('td', { class: d.FaultySectors > 0 ? 'num bad' : 'num' }, d.FaultySectors),
      el('td', { class: 'num' }, d.RecoveringSectors),
      el('td', { class: d.Proven ? 'ok' : 'muted' }, d.LiveSectors > 0 ? (d.Proven ? 'proven' : 'not yet') : '')));
  fill('proving',
    el('p', {},
      'epoch ', el('b', {}, info.CurrentEpoch), ', deadline ', el('b', {}, info.DeadlineIndex),
      ' of ', info.Deadlines, ' (epochs ', info.DeadlineOpen, ' to ', info.DeadlineClose, '); ',
      el('b', { 'data-live-sectors': info.LiveSectors }, info.LiveSectors), ' live sectors, ',
      el('b', { class: info.FaultySectors > 0 ? 'bad' : '' }, info.FaultySectors), ' faulty, ',
      info.RecoveringSectors, ' recovering'),
    el('p', {},
      'since the hub started: ',
      el('b', { 'data-window-posts-submitted': info.WindowPostsSubmitted }, info.WindowPostsSubmitted),
      ' WindowPoSts submitted, ',
      el('b', { class: info.WindowPostsFailed > 0 ? 'bad' : '', 'data-window-posts-failed': info.WindowPostsFailed },
        info.WindowPostsFailed), ' failed; ',
      el('b', {}, info.BlocksWon), ' blocks won'),
    el('div', { 'data-deadlines': deadlines.length },
      table(['deadline', 'opens', 'partitions', 'live', 'faulty', 'recovering', 'WindowPoSt'], rows),
      el('p', { class: 'muted' }, (deadlines.length - shown.length) + ' of ' + deadlines.length +
        ' deadlines hold no sectors and are not shown')));
}

function renderDeals(spokes) {
  const total = {};
  const rows = [];
  for (const spoke of spokes) {
    const deals = spoke.Deals || {};
    if (!(spoke.Services || []).includes('deals')) continue;
    for (const [state, n] of Object.entries(deals)) total[state] = (total[state] || 0) + n;
    rows.push(el('tr', {},
      el('td', {}, spoke.Id),
      el('td', {}, Object.entries(deals).map(([s, n]) => s + ' ' + n).join(', ') || 'none')));
  }
  fill('deals',
    counts('deals', total),
    rows.length ? table(['deals process', 'deals by state'], rows)
      : el('p', { class: 'muted' }, 'no deals process has reported'));
}

function workerRow(w) {
  const now = Date.now() / 1000;
  let detail = w.Detail;
  if (w.RetryAt) detail += '; next try in ' + Math.max(0, Math.round(w.RetryAt - now)) + ' s';
  return el('tr', { 'data-worker': w.Name, 'data-worker-state': w.State },
    el('td', {}, w.Kind),
    el('td', {}, w.Name),
    el('td', { class: { Retrying: 'bad', Waiting: 'warn', Busy: 'ok' }[w.State] || 'muted' }, w.State.toLowerCase()),
    el('td', { class: 'num' }, ago(w.Since).replace(' ago', '')),
    el('td', { class: 'num' }, w.ConsecutiveErrors ? w.ConsecutiveErrors + '/' + w.Errors : w.Errors),
    el('td', {}, detail, w.LastError ? el('div', { class: 'bad' }, 'last error: ' + w.LastError) : null));
}

function renderWorkers(workers) {
  const unseals = workers.filter((w) => w.Kind === 'unseal');
  fill('unseals',
    el('p', {}, el('b', { 'data-unseals': unseals.length }, unseals.length), ' unseal jobs (',
      unseals.filter((w) => w.State === 'Busy').length, ' running, ',
      unseals.filter((w) => w.State === 'Waiting').length, ' waiting for a slot)'),
    unseals.length ? table(['kind', 'name', 'state', 'for', 'errors', 'detail'], unseals.map(workerRow)) : null);
  fill('workers',
    el('p', {}, el('b', { 'data-workers': workers.length }, workers.length), ' workers'),
    table(['kind', 'name', 'state', 'for', 'errors', 'detail'], workers.map(workerRow)));
}

async function refresh() {
  const errorLine = document.getElementById('error');
  try {
    const [version, miner, head, spokes, summary, sectors, info, deadlines, workers] = await Promise.all([
      call('Version'), call('MinerInfo'), call('ChainHead'), call('SpokesList'), call('SectorsSummary'),
      call('SectorsList'), call('ProvingInfo'), call('ProvingDeadlines'), call('WorkersList'),
    ]);
    renderTopology(version, miner, head, spokes || []);
    renderSectors(summary || {}, sectors || []);
    renderProving(info, deadlines || []);
    renderDeals(spokes || []);
    renderWorkers(workers || []);
    errorLine.hidden = true;
    delete document.body.dataset.error;
    refreshes += 1;
    document.body.dataset.loaded = refreshes;
    document.getElementById('updated').textContent =
      'updated ' + new Date().toLocaleTimeString() + ', every ' + REFRESH_MS / 1000 + ' s';
  } catch (e) {
    errorLine.textContent = String(e.message || e);
    errorLine.hidden = false;
    document.body.dataset.error = String(e.message || e);
    if (e instanceof AuthError) {
      sessionStorage.removeItem(TOKEN_KEY);
      token = null;
      askForToken();
      return;
    }
  }
  setTimeout(refresh, REFRESH_MS);
}

function askForToken() {
  const form = document.getElementById('login');
  form.hidden = false;
  document.getElementById('updated').textContent = 'needs a token';
  form.onsubmit = (event) => {
    event.preventDefault();
    token = document.getElementById('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    form.hidden = true;
    refresh();
  };
}

if (token) {
  refresh();
} else {
  askForToken();
}
