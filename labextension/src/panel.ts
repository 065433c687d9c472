/**
 * The "Transformations" side panel (the cache store as the server sees it) and one
 * entry's detail, which opens in the main area where it is wide enough to read:
 * fields, pseudocode, code, runs and the audit history with what each revision
 * asked and changed.
 *
 * Plain DOM built with `textContent` only, because every value (client ids,
 * pseudocode, reasons, chat text) comes from a workbook, a data sample or a planner.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  MainAreaWidget,
  WidgetTracker,
  showDialog
} from '@jupyterlab/apputils';
import { NotebookActions } from '@jupyterlab/notebook';
import { refreshIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import {
  IAuditEvent,
  IDetailReply,
  IEntrySummary,
  IListReply,
  IRunRecord,
  getEntry,
  lastEvent,
  listEntries,
  revokeEntry
} from './api';
import { CommandIDs, MATERIALISE_EVENT, STORE_CHANGED_EVENT } from './constants';
import { transformIcon } from './icon';

const PANEL_ID = 'dataeng-magics-transformations';

type CellValue = string | number | null | undefined | Node;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** `2026-11-22T05:33:29.123456+00:00` -> `2026-11-22 05:33 UTC`. */
export function when(iso: string | null | undefined): string {
  if (!iso) {
    return '—';
  }
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso);
  return match ? `${match[1]} ${match[2]} UTC` : iso;
}

function short(digest: string | null | undefined, length = 12): string {
  return digest ? digest.slice(0, length) : '—';
}

function table(head: string[], rows: CellValue[][], className: string): HTMLTableElement {
  const node = el('table', `dem-Table ${className}`);
  const tr = el('tr');
  for (const name of head) {
    tr.append(el('th', undefined, name));
  }
  node.createTHead().append(tr);
  const body = node.createTBody();
  for (const row of rows) {
    const line = el('tr');
    for (const value of row) {
      const td = el('td');
      if (value instanceof Node) {
        td.append(value);
      } else {
        td.textContent = value === null || value === undefined ? '—' : String(value);
      }
      line.append(td);
    }
    body.append(line);
  }
  return node;
}

function statusBadge(status: string): HTMLElement {
  return el('span', `dem-Status dem-Status-${status}`, status);
}

/** A run in progress or interrupted (the store's run lease), beside the status badge. */
function runBadges(entry: IEntrySummary): HTMLElement[] {
  if (!entry.run_state) {
    return [];
  }
  const badge = el('span', `dem-RunState dem-RunState-${entry.run_state}`, entry.run_state);
  badge.dataset.field = 'run_state';
  badge.title =
    entry.run_state === 'running'
      ? 'A run of this plan is going on now.'
      : 'A run of this plan stopped without finishing (its lease lapsed).';
  return [badge];
}

/**
 * Who acted, in one scheme everywhere: "approved by" the reviewer, "rejected by"
 * the reviewer who rejected it, "revoked by" who revoked it.
 */
function byLine(entry: IEntrySummary): string {
  if (entry.status === 'revoked') {
    return `revoked by ${entry.revoked_by ?? 'someone'}`;
  }
  if (entry.status === 'rejected') {
    return `rejected by ${entry.reviewer ?? 'someone'}`;
  }
  return entry.reviewer ? `approved by ${entry.reviewer}` : 'not approved';
}

/** The body of the revoke dialog: what happens, and the reason (required). */
class RevokeBody extends Widget implements Dialog.IBodyWidget<string> {
  constructor(entry: IEntrySummary, error: string) {
    super();
    this.addClass('dem-RevokeBody');
    this.node.append(
      el(
        'p',
        undefined,
        `Revoke the ${entry.status} plan of client ${entry.client} ` +
          `(key ${short(entry.key, 16)})?`
      ),
      el(
        'p',
        undefined,
        'Replays of this client then fail with "approval required" until a new plan ' +
          'is approved. The revocation and its reason are recorded in the audit log.'
      )
    );
    this._reason = el('input', 'jp-mod-styled dem-RevokeBody-reason');
    this._reason.placeholder = 'reason (required), e.g. mapping v5 arrived';
    this.node.append(this._reason, el('p', 'dem-RevokeBody-error', error));
  }

  getValue(): string {
    return this._reason.value.trim();
  }

  private _reason: HTMLInputElement;
}

/** Ask for a reason until one is given (or the dialog is cancelled: null). */
async function askReason(entry: IEntrySummary): Promise<string | null> {
  let error = '';
  for (;;) {
    const result = await showDialog({
      title: 'Revoke transformation',
      body: new RevokeBody(entry, error),
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Revoke' })],
      focusNodeSelector: 'input'
    });
    if (!result.button.accept) {
      return null;
    }
    if (result.value) {
      return result.value;
    }
    error = 'A revocation needs a reason: say why, for whoever reads the audit log.';
  }
}

/** What an audit event's row says beyond its kind: its details, or for a revision
 * what was asked, the planner's answer and the plan lines it changed. */
function eventDetails(event: IAuditEvent): Node {
  const box = el('div', 'dem-EventDetails');
  const details = Object.entries(event.details)
    .filter(([, value]) => value !== null && value !== undefined && value !== '')
    .map(([name, value]) => `${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join(' · ');
  const revision = event.revision;
  if (revision) {
    const asked = el('div', 'dem-Revision-request');
    asked.append(el('span', 'dem-Muted', 'asked: '), revision.request);
    box.append(asked, el('div', 'dem-Revision-reply', revision.reply));
    if (revision.changes.length) {
      const diff = el('pre', 'dem-Revision-diff');
      for (const line of revision.changes) {
        const kind = line.startsWith('+')
          ? 'dem-mod-added'
          : line.startsWith('-')
            ? 'dem-mod-removed'
            : '';
        diff.append(el('div', kind, line));
      }
      box.append(diff);
    } else {
      box.append(el('div', 'dem-Muted', 'The plan did not change.'));
    }
  }
  if (details) {
    box.append(el('div', 'dem-Muted', details));
  }
  return box;
}

/** One entry, readable at the main area's width; refreshes itself after a revoke. */
export class EntryDetail extends Widget {
  constructor(key: string, onRevoked: () => void) {
    super();
    this.key = key;
    this._onRevoked = onRevoked;
    this.addClass('dem-EntryDetail');
    this._status = el('div', 'dem-EntryDetail-status');
    this._body = el('div', 'dem-EntryDetail-body');
    this.node.append(this._status, this._body);
  }

  readonly key: string;

  /** Re-read the entry, its runs and its audit history from the server. */
  async refresh(): Promise<void> {
    const generation = ++this._generation;
    try {
      const reply = await getEntry(this.key);
      if (generation === this._generation) {
        this._render(reply);
      }
    } catch (error) {
      if (generation === this._generation) {
        this._say(`Could not read the store: ${(error as Error).message}`, true);
      }
    }
  }

  protected override onAfterAttach(): void {
    void this.refresh();
  }

  private _say(text: string, error = false): void {
    this._status.textContent = text;
    this._status.classList.toggle('dem-mod-error', error);
  }

  private _render(reply: IDetailReply): void {
    const { entry, events, runs } = reply;
    this.title.label = `${entry.client} · ${short(entry.key, 8)}`;
    this.title.caption = `Transformation ${entry.client}, key ${entry.key}`;
    const refresh = el('button', 'jp-mod-styled dem-Detail-refresh', 'Refresh');
    refresh.addEventListener('click', () => void this.refresh());
    const revoke = el('button', 'jp-mod-styled jp-mod-warn dem-Detail-revoke', 'Revoke…');
    revoke.disabled = entry.status === 'revoked';
    revoke.title =
      entry.status === 'revoked'
        ? `Already revoked by ${entry.revoked_by ?? 'someone'}.`
        : 'Revoke this plan (a reason is required): replays need a new approval.';
    revoke.addEventListener('click', () => void this._revoke(entry));

    const heading = el('h2', 'dem-Detail-title');
    const by = el('span', 'dem-Muted', ` ${byLine(entry)}`);
    heading.append(`${entry.client} `, statusBadge(entry.status), ...runBadges(entry), by);
    const code = (text: string | null | undefined): Node => el('code', 'dem-Hash', text || '—');
    const fields: [string, CellValue][] = [
      ['key', code(entry.key)],
      ['mapping', entry.mapping_file],
      ['status', entry.status]
    ];
    if (entry.status === 'revoked') {
      const at = lastEvent(events, 'revocation');
      fields.push(
        ['revoked by', entry.revoked_by],
        ['revoked at', when(at?.time)],
        ['reason', entry.reason]
      );
    } else if (entry.status === 'rejected') {
      fields.push(['rejected by', entry.reviewer], ['reason', entry.reason]);
    }
    if (entry.approved_at) {
      fields.push(['approved by', entry.reviewer], ['approved at', when(entry.approved_at)]);
    }
    fields.push(
      ['runs', entry.runs],
      ['last run', entry.runs ? `${when(entry.last_run_at)} (${entry.last_outcome})` : 'never'],
      ['plan sha256', code(entry.plan_sha256)],
      ['code sha256', code(entry.code_sha256)],
      ['created', when(entry.created_at)]
    );
    const detail = el('div', 'dem-Detail');
    detail.dataset.key = entry.key;
    detail.dataset.status = entry.status;
    const actions = el('div', 'dem-Detail-actions');
    actions.append(refresh, revoke);
    detail.append(
      actions,
      heading,
      table(['', ''], fields, 'dem-Detail-fields'),
      el('h3', undefined, 'Pseudocode'),
      el('pre', 'dem-Detail-pseudocode', entry.pseudocode),
      el('h3', undefined, 'Code'),
      el('pre', 'dem-Detail-code', entry.code || '(not compiled: the plan has unresolved steps)'),
      el('h3', undefined, `Runs (${runs.length})`),
      this._runs(runs),
      el('h3', undefined, `Audit history (${events.length})`),
      this._events(events)
    );
    this._say('');
    this._body.replaceChildren(detail);
  }

  private _runs(runs: IRunRecord[]): HTMLElement {
    if (!runs.length) {
      return el('p', 'dem-Muted', 'Never run.');
    }
    return table(
      ['Started', 'Outcome', 'Platform', 'Rows in', 'Rows out', 'Seconds'],
      runs.map(run => [
        when(run.started_at),
        run.outcome,
        run.platform,
        run.rows_in,
        run.rows_out,
        run.seconds.toFixed(1)
      ]),
      'dem-RunTable'
    );
  }

  private _events(events: IAuditEvent[]): HTMLElement {
    if (!events.length) {
      return el('p', 'dem-Muted', 'No audit events.');
    }
    const node = table(
      ['#', 'Time', 'Event', 'By', 'What'],
      events.map(event => [
        event.seq,
        when(event.time),
        event.event,
        event.actor,
        eventDetails(event)
      ]),
      'dem-AuditTable'
    );
    Array.from(node.tBodies[0].rows).forEach((row, index) => {
      row.dataset.event = events[index].event;
    });
    return node;
  }

  private async _revoke(entry: IEntrySummary): Promise<void> {
    const reason = await askReason(entry);
    if (reason === null) {
      return;
    }
    try {
      await revokeEntry(entry.key, reason);
    } catch (error) {
      this._say(`Could not revoke: ${(error as Error).message}`, true);
      return;
    }
    await this.refresh();
    this._say(`Revoked ${entry.client}: replays now need a new approval.`);
    this._onRevoked();
  }

  private _body: HTMLDivElement;
  private _generation = 0;
  private _onRevoked: () => void;
  private _status: HTMLDivElement;
}

/** The list of store entries; opening one shows its detail in the main area. */
export class TransformationsPanel extends Widget {
  constructor(open: (key: string) => void) {
    super();
    this._open = open;
    this.id = PANEL_ID;
    this.addClass('dem-TransformationsPanel');
    this.title.icon = transformIcon;
    this.title.caption = 'Transformations';

    const header = el('div', 'dem-TransformationsPanel-header');
    const refresh = el('button', 'jp-Button jp-mod-minimal dem-TransformationsPanel-refresh');
    refresh.title = 'Refresh: read the store again';
    refresh.setAttribute('aria-label', 'Refresh');
    refresh.append(refreshIcon.element({ tag: 'span' }));
    refresh.addEventListener('click', () => void this.refresh());
    header.append(el('h2', undefined, 'Transformations'), refresh);
    this._filter = el('select', 'jp-mod-styled dem-TransformationsPanel-filter');
    this._filter.title = 'Show one client';
    this._filter.addEventListener('change', () => {
      this._client = this._filter.value;
      void this.refresh();
    });
    this._status = el('div', 'dem-TransformationsPanel-status');
    this._body = el('div', 'dem-TransformationsPanel-body');
    this.node.append(header, this._filter, this._status, this._body);
  }

  /** Re-read the store from the server. */
  async refresh(): Promise<void> {
    const generation = ++this._generation;
    try {
      const list = await listEntries(this._client || undefined);
      if (generation === this._generation) {
        this._renderList(list);
      }
    } catch (error) {
      if (generation === this._generation) {
        this._say(`Could not read the store: ${(error as Error).message}`, true);
      }
    }
  }

  /** Refresh soon, once, however many notebook cells finish meanwhile. */
  scheduleRefresh(delay = 400): void {
    if (!this.isVisible) {
      return;
    }
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => void this.refresh(), delay);
  }

  protected override onAfterShow(): void {
    void this.refresh();
  }

  private _say(text: string, error = false): void {
    this._status.textContent = text;
    this._status.classList.toggle('dem-mod-error', error);
  }

  private _renderFilter(clients: string[]): void {
    const options = [el('option', undefined, 'All clients')];
    options[0].value = '';
    for (const client of clients) {
      const option = el('option', undefined, client);
      option.value = client;
      options.push(option);
    }
    this._filter.replaceChildren(...options);
    this._filter.value = clients.includes(this._client) ? this._client : '';
  }

  private _renderList(reply: IListReply): void {
    this._renderFilter(reply.clients);
    const count = reply.entries.length;
    this._say(
      count
        ? `${count} transformation${count === 1 ? '' : 's'} in ${reply.home}`
        : `No transformations yet in ${reply.home}. Run a %%transform cell to draft one.`
    );
    const list = el('ul', 'dem-EntryList');
    for (const entry of reply.entries) {
      list.append(this._card(entry));
    }
    this._body.replaceChildren(list);
  }

  /** One entry of the list: client and status, then key and who acted, then runs. */
  private _card(entry: IEntrySummary): HTMLLIElement {
    const field = (name: string, text: string, className = ''): HTMLElement => {
      const node = el('span', `dem-EntryRow-${name} ${className}`.trim(), text);
      node.dataset.field = name;
      return node;
    };
    const card = el('li', 'dem-EntryRow');
    card.dataset.key = entry.key;
    card.dataset.client = entry.client;
    card.dataset.status = entry.status;
    card.tabIndex = 0;
    card.title = `Open ${entry.client} (key ${entry.key})`;
    const status = statusBadge(entry.status);
    status.dataset.field = 'status';
    const top = el('div', 'dem-EntryRow-line');
    const badges = el('span', 'dem-EntryRow-badges');
    badges.append(status, ...runBadges(entry));
    top.append(field('client', entry.client), badges);
    const middle = el('div', 'dem-EntryRow-line dem-Muted');
    middle.append(
      'key ',
      field('key', short(entry.key), 'dem-Code'),
      ' · ',
      field('by', byLine(entry))
    );
    const bottom = el('div', 'dem-EntryRow-line dem-Muted');
    bottom.append(
      'approved ',
      field('approved_at', when(entry.approved_at)),
      ' · runs ',
      field('runs', String(entry.runs)),
      ' · last ',
      field('last_outcome', entry.last_outcome ?? '—')
    );
    card.append(top, middle, bottom);
    const open = (): void => this._open(entry.key);
    card.addEventListener('click', open);
    card.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        open();
      }
    });
    return card;
  }

  private _body: HTMLDivElement;
  private _client = '';
  private _filter: HTMLSelectElement;
  private _generation = 0;
  private _open: (key: string) => void;
  private _status: HTMLDivElement;
  private _timer = 0;
}

/** The side panel, entry details in the main area, and refreshes after notebook runs. */
export const panelPlugin: JupyterFrontEndPlugin<void> = {
  id: 'dataeng-magics:transformations-panel',
  description: 'The Transformations side panel: the cache store and audit log.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ): void => {
    const details = new WidgetTracker<MainAreaWidget<EntryDetail>>({
      namespace: 'dataeng-magics-entry'
    });
    const revoked = (): void => {
      void panel.refresh();
      window.dispatchEvent(new Event(STORE_CHANGED_EVENT)); // notebooks re-check their badges
    };
    const openEntry = (key: string): void => {
      const open = details.find(widget => widget.content.key === key);
      if (open) {
        app.shell.activateById(open.id);
        void open.content.refresh();
        return;
      }
      const content = new EntryDetail(key, revoked);
      content.title.label = `Transformation ${short(key, 8)}`; // the tab, until it loads
      content.title.icon = transformIcon;
      const widget = new MainAreaWidget({ content });
      widget.id = `dem-entry-${key.slice(0, 16)}`;
      widget.title.closable = true;
      void details.add(widget);
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
    };
    const panel = new TransformationsPanel(openEntry);
    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, PANEL_ID);

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'Show Transformations',
      caption: 'The cache store: approvals, runs and the audit history',
      icon: transformIcon,
      execute: () => app.shell.activateById(PANEL_ID)
    });
    app.commands.addCommand(CommandIDs.refreshPanel, {
      label: 'Refresh Transformations',
      execute: () => panel.refresh()
    });
    app.commands.addCommand(CommandIDs.openEntry, {
      label: 'Open Transformation',
      caption: 'One cached plan: fields, pseudocode, code, runs and audit history',
      execute: args => openEntry(String(args.key))
    });
    for (const command of [CommandIDs.openPanel, CommandIDs.refreshPanel]) {
      palette?.addItem({ command, category: 'Transformations' });
    }
    // A %%transform cell or a materialised cell changes the store: show it.
    NotebookActions.executed.connect(() => panel.scheduleRefresh());
    document.addEventListener(MATERIALISE_EVENT, () => panel.scheduleRefresh(), {
      capture: true
    });
  }
};
