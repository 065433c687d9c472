/**
 * The "Transformations" side panel: the cache store as the server sees it.
 *
 * Plain DOM built with `textContent` only, because every value (client ids,
 * pseudocode, reasons) comes from a workbook, a data sample or a planner.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, ICommandPalette, showDialog } from '@jupyterlab/apputils';
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
  listEntries,
  revokeEntry
} from './api';
import { CommandIDs, MATERIALISE_EVENT } from './constants';
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

/** The body of the revoke dialog: what happens, and a reason for the audit log. */
class RevokeBody extends Widget implements Dialog.IBodyWidget<string> {
  constructor(entry: IEntrySummary) {
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
          'is approved. The revocation is recorded in the audit log.'
      )
    );
    this._reason = el('input', 'jp-mod-styled dem-RevokeBody-reason');
    this._reason.placeholder = 'reason (recorded in the audit log)';
    this.node.append(this._reason);
  }

  getValue(): string {
    return this._reason.value.trim();
  }

  private _reason: HTMLInputElement;
}

/** The list of store entries, and one entry's detail with its audit history. */
export class TransformationsPanel extends Widget {
  constructor() {
    super();
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
      this._openKey = null;
      void this.refresh();
    });
    this._status = el('div', 'dem-TransformationsPanel-status');
    this._body = el('div', 'dem-TransformationsPanel-body');
    this.node.append(header, this._filter, this._status, this._body);
  }

  /** The key whose detail is shown, if any. */
  get openKey(): string | null {
    return this._openKey;
  }

  /** Re-read the store (and the open entry) from the server. */
  async refresh(): Promise<void> {
    const generation = ++this._generation;
    try {
      if (this._openKey) {
        const detail = await getEntry(this._openKey);
        if (generation === this._generation) {
          this._renderDetail(detail);
        }
      } else {
        const list = await listEntries(this._client || undefined);
        if (generation === this._generation) {
          this._renderList(list);
        }
      }
    } catch (error) {
      if (generation === this._generation) {
        this._say(`Could not read the store: ${(error as Error).message}`, true);
      }
    }
  }

  /** Show one entry: fields, pseudocode, code, runs and audit history. */
  async open(key: string | null): Promise<void> {
    this._openKey = key;
    await this.refresh();
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

  /** One entry of the list: client and status, then key, reviewer, approval and runs. */
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
    top.append(field('client', entry.client), status);
    const middle = el('div', 'dem-EntryRow-line dem-Muted');
    middle.append(
      'key ',
      field('key', short(entry.key), 'dem-Code'),
      ' · ',
      field('reviewer', entry.reviewer ?? 'no reviewer')
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
    const open = (): void => void this.open(entry.key);
    card.addEventListener('click', open);
    card.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        open();
      }
    });
    return card;
  }

  private _renderDetail(reply: IDetailReply): void {
    const { entry, events, runs } = reply;
    const back = el('button', 'jp-mod-styled dem-Detail-back', '← All');
    back.title = 'Back to every transformation';
    back.addEventListener('click', () => void this.open(null));
    const revoke = el('button', 'jp-mod-styled jp-mod-warn dem-Detail-revoke', 'Revoke…');
    revoke.disabled = entry.status === 'revoked';
    revoke.title =
      entry.status === 'revoked'
        ? `Already revoked by ${entry.revoked_by ?? 'someone'}.`
        : 'Revoke this plan: replays need a new approval.';
    revoke.addEventListener('click', () => void this._revoke(entry));

    const heading = el('h3', 'dem-Detail-title');
    heading.append(`${entry.client} `, statusBadge(entry.status));
    const fields: [string, CellValue][] = [
      ['key', el('code', undefined, entry.key)],
      ['reviewer', entry.reviewer],
      ['approved at', when(entry.approved_at)],
      ['runs', entry.runs],
      ['last outcome', entry.last_outcome],
      ['last run', when(entry.last_run_at)],
      ['mapping', entry.mapping_file],
      ['code sha256', el('code', undefined, entry.code_sha256 || '—')],
      ['plan sha256', el('code', undefined, entry.plan_sha256)]
    ];
    if (entry.reason || entry.revoked_by) {
      fields.push(['reason', entry.reason], ['revoked by', entry.revoked_by]);
    }
    const detail = el('div', 'dem-Detail');
    detail.dataset.key = entry.key;
    detail.dataset.status = entry.status;
    const actions = el('div', 'dem-Detail-actions');
    actions.append(back, revoke);
    detail.append(
      actions,
      heading,
      table(['', ''], fields, 'dem-Detail-fields'),
      el('h4', undefined, 'Pseudocode'),
      el('pre', 'dem-Detail-pseudocode', entry.pseudocode),
      el('h4', undefined, 'Code'),
      el('pre', 'dem-Detail-code', entry.code || '(not compiled: the plan has unresolved steps)'),
      el('h4', undefined, `Runs (${runs.length})`),
      this._runs(runs),
      el('h4', undefined, `Audit history (${events.length})`),
      this._events(events)
    );
    this._say(`${entry.client}: ${entry.status}`);
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
      ['#', 'Time', 'Event', 'Actor', 'Details'],
      events.map(event => [
        event.seq,
        when(event.time),
        event.event,
        event.actor,
        Object.entries(event.details)
          .map(([name, value]) => `${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}`)
          .join('; ')
      ]),
      'dem-AuditTable'
    );
    Array.from(node.tBodies[0].rows).forEach((row, index) => {
      row.dataset.event = events[index].event;
    });
    return node;
  }

  private async _revoke(entry: IEntrySummary): Promise<void> {
    const result = await showDialog({
      title: 'Revoke transformation',
      body: new RevokeBody(entry),
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Revoke' })],
      focusNodeSelector: 'input'
    });
    if (!result.button.accept) {
      return;
    }
    try {
      await revokeEntry(entry.key, result.value ?? '');
    } catch (error) {
      this._say(`Could not revoke: ${(error as Error).message}`, true);
      return;
    }
    await this.refresh();
    this._say(`Revoked ${entry.client}: replays now need a new approval.`);
  }

  private _body: HTMLDivElement;
  private _client = '';
  private _filter: HTMLSelectElement;
  private _generation = 0;
  private _openKey: string | null = null;
  private _status: HTMLDivElement;
  private _timer = 0;
}

/** The side panel, a command to open it, and refreshes after notebook runs. */
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
    const panel = new TransformationsPanel();
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
