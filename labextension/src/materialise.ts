/**
 * Approved cells: inserted below their `%%transform` cell when the review panel
 * approves or materialises, badged, and read-only until explicitly unlocked.
 *
 * The kernel side only dispatches a DOM event from the review panel's
 * `CellInserter` widget; inserting through the notebook model (rather than the
 * kernel's `set_next_input`) lets the cell land right below the panel with
 * metadata naming its approval, lets a second approval of the same code find the
 * cell already there, and lets a new approval replace the cell of an earlier one.
 *
 * The badge follows the store: when the notebook or the page gets focus, a cell is
 * selected or run, or this page revoked something, it asks the server for each
 * approved cell's entry (`GET /dataeng-magics/entries/KEY`), so a revocation made
 * anywhere (side panel, CLI, another kernel) shows on the next interaction.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, showDialog } from '@jupyterlab/apputils';
import { Cell, ICellModel } from '@jupyterlab/cells';
import {
  INotebookModel,
  INotebookTracker,
  Notebook,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';

import { IEntryDetail, getEntry, lastEvent } from './api';
import {
  CommandIDs,
  IMaterialiseRequest,
  IMaterialisedMeta,
  MATERIALISE_EVENT,
  METADATA_KEY,
  STORE_CHANGED_EVENT,
  TRANSFORM_LINE,
  guardOf
} from './constants';

const MATERIALISED_CLASS = 'dem-materialised';
/** Cells waited for once already (see `decorateCells`). */
const waiting = new WeakSet<Cell>();
const BADGE_CLASS = 'dem-ApprovedBadge';
/** A key's status is asked again after this long, at the next interaction. */
const FRESH_MS = 3000;
const RERUN = 're-run the %%transform cell above to review and approve it again';

function isRequest(value: unknown): value is IMaterialiseRequest {
  const v = value as Partial<IMaterialiseRequest> | null;
  return (
    !!v &&
    typeof v.cell === 'string' &&
    typeof v.key === 'string' &&
    typeof v.code_sha256 === 'string'
  );
}

/** The approval a cell belongs to: its metadata, else its guard line. */
export function materialisedMeta(model: ICellModel): IMaterialisedMeta | null {
  const meta = model.getMetadata(METADATA_KEY) as Partial<IMaterialisedMeta> | undefined;
  if (meta && typeof meta.key === 'string' && typeof meta.code_sha256 === 'string') {
    return { key: meta.key, code_sha256: meta.code_sha256 };
  }
  return null;
}

function isLocked(model: ICellModel): boolean {
  return model.getMetadata('editable') === false;
}

function isTransformCell(model: ICellModel): boolean {
  return model.type === 'code' && TRANSFORM_LINE.test(model.sharedModel.getSource());
}

/** Index of a cell already tied to this approval (by metadata or guard line), or -1. */
function findExisting(model: INotebookModel, request: IMaterialiseRequest): number {
  for (let index = 0; index < model.cells.length; index++) {
    const cell = model.cells.get(index);
    if (cell.type !== 'code') {
      continue;
    }
    const meta = materialisedMeta(cell) ?? guardOf(cell.sharedModel.getSource());
    if (meta && meta.key === request.key && meta.code_sha256 === request.code_sha256) {
      return index;
    }
  }
  return -1;
}

/**
 * Index of an earlier approved cell of the same client and mapping among the cells
 * below the `%%transform` cell at `from` (up to the next `%%transform` cell), or -1:
 * a new approval replaces it rather than stacking a second cell.
 */
function findEarlier(model: INotebookModel, from: number, request: IMaterialiseRequest): number {
  const wanted = guardOf(request.cell);
  if (!wanted) {
    return -1;
  }
  for (let index = from + 1; index < model.cells.length; index++) {
    const cell = model.cells.get(index);
    if (isTransformCell(cell)) {
      break;
    }
    const guard = cell.type === 'code' ? guardOf(cell.sharedModel.getSource()) : null;
    if (guard && guard.client === wanted.client && guard.mapping === wanted.mapping) {
      return index;
    }
  }
  return -1;
}

/** Insert the approved cell below the cell whose output dispatched `event`. */
export function handleMaterialise(panel: NotebookPanel, event: Event): void {
  const detail = (event as CustomEvent<unknown>).detail;
  const notebook = panel.content;
  const model = notebook.model;
  if (!isRequest(detail) || !model || !(event.target instanceof Node)) {
    return;
  }
  const target = event.target;
  const index = notebook.widgets.findIndex(cell => cell.node.contains(target));
  if (index < 0) {
    return;
  }
  event.preventDefault(); // tells the widget the extension took care of it
  const existing = findExisting(model, detail);
  if (existing >= 0) {
    detail.result = 'exists';
    notebook.activeCellIndex = existing;
    return;
  }
  const metadata: IMaterialisedMeta = { key: detail.key, code_sha256: detail.code_sha256 };
  const cell = {
    cell_type: 'code',
    source: detail.cell,
    metadata: { [METADATA_KEY]: { ...metadata }, editable: false },
    outputs: [],
    execution_count: null
  };
  const earlier = findEarlier(model, index, detail);
  const at = earlier >= 0 ? earlier : index + 1;
  model.sharedModel.transact(() => {
    if (earlier >= 0) {
      model.sharedModel.deleteCell(earlier);
    }
    model.sharedModel.insertCell(at, cell);
  });
  detail.result = earlier >= 0 ? 'replaced' : 'inserted';
  notebook.activeCellIndex = at;
}

/** What the server said about an approved cell's entry. */
interface IState {
  status: IEntryDetail['status'] | 'missing';
  code_sha256: string;
  by: string | null;
  reason: string | null;
  checked: number;
}

/** Entry states by key, shared by every notebook of the page. */
const states = new Map<string, IState>();

/** The badge's look and words for a cell, given what the store says about its key. */
function badgeOf(
  meta: IMaterialisedMeta,
  locked: boolean,
  state: IState | undefined
): { kind: string; text: string; title: string } {
  const ids = `key ${meta.key.slice(0, 12)} · code ${meta.code_sha256.slice(0, 12)}`;
  const title =
    `key ${meta.key}\ncode sha256 ${meta.code_sha256}\n` +
    '%%transform_run refuses to run this cell unless its code is the current approval.';
  if (!state || (state.status === 'approved' && state.code_sha256 === meta.code_sha256)) {
    const lock = locked ? ' · read-only' : ' · unlocked: an edited cell refuses to run';
    return { kind: 'approved', text: `✔ Approved transformation · ${ids}${lock}`, title };
  }
  if (state.status === 'missing') {
    const text = `? Not in this server's store · ${ids}: it will not run here`;
    return { kind: 'missing', text, title };
  }
  let why: string;
  if (state.status === 'approved') {
    why = 'Outdated: another approval replaced this code';
  } else if (state.status === 'revoked') {
    why = `Revoked by ${state.by ?? 'someone'}: ${state.reason || 'no reason given'}`;
  } else {
    why = `Not approved: the plan is ${state.status}`;
  }
  const kind = state.status === 'approved' ? 'outdated' : 'revoked';
  return { kind, text: `✘ ${why}; ${RERUN}`, title };
}

/**
 * Badge (or un-badge) every cell of a notebook to match its metadata and its entry's
 * status. A cell the windowed notebook has not rendered yet is decorated once it is
 * (`later`).
 */
function decorateCells(
  notebook: Notebook,
  commands: JupyterFrontEnd['commands'],
  later: () => void
): void {
  for (const cell of notebook.widgets) {
    const meta = cell.model.type === 'code' ? materialisedMeta(cell.model) : null;
    cell.toggleClass(MATERIALISED_CLASS, meta !== null);
    let badge = cell.node.querySelector<HTMLElement>(`:scope > .${BADGE_CLASS}`);
    if (!meta) {
      badge?.remove();
      continue;
    }
    const input = cell.node.querySelector(':scope > .jp-Cell-inputWrapper');
    if (!input) {
      if (!waiting.has(cell)) {
        waiting.add(cell);
        void cell.ready.then(later);
      }
      continue;
    }
    const locked = isLocked(cell.model);
    if (!badge) {
      badge = document.createElement('div');
      badge.className = BADGE_CLASS;
      const label = document.createElement('span');
      label.className = `${BADGE_CLASS}-label`;
      const toggle = document.createElement('button');
      toggle.className = `jp-mod-styled ${BADGE_CLASS}-toggle`;
      toggle.addEventListener('click', event => {
        event.stopPropagation();
        notebook.activeCellIndex = notebook.widgets.indexOf(cell);
        const command = isLocked(cell.model) ? CommandIDs.unlockCell : CommandIDs.lockCell;
        void commands.execute(command);
      });
      badge.append(label, toggle);
      cell.node.insertBefore(badge, input);
    }
    const { kind, text, title } = badgeOf(meta, locked, states.get(meta.key));
    badge.dataset.key = meta.key;
    badge.dataset.locked = String(locked);
    badge.dataset.status = kind;
    badge.querySelector(`.${BADGE_CLASS}-label`)!.textContent = text;
    badge.querySelector(`.${BADGE_CLASS}-toggle`)!.textContent = locked ? 'Unlock' : 'Lock';
    badge.title = `${text}\n${title}`;
  }
}

/** Ask the server about `keys` (those not asked within FRESH_MS, unless `force`). */
async function checkKeys(keys: Iterable<string>, force: boolean): Promise<boolean> {
  const now = Date.now();
  const due = [...new Set(keys)].filter(
    key => force || now - (states.get(key)?.checked ?? 0) > FRESH_MS
  );
  const replies = await Promise.all(
    due.map(async key => {
      try {
        const { entry, events } = await getEntry(key);
        const revocation = lastEvent(events, 'revocation');
        states.set(key, {
          status: entry.status,
          code_sha256: entry.code_sha256,
          by: entry.revoked_by ?? revocation?.actor ?? null,
          reason: entry.reason,
          checked: Date.now()
        });
      } catch (error) {
        if (error instanceof ServerConnection.ResponseError && error.response.status === 404) {
          const checked = Date.now();
          states.set(key, { status: 'missing', code_sha256: '', by: null, reason: null, checked });
        } else {
          return false; // no server extension, or offline: the badge stays as it was
        }
      }
      return true;
    })
  );
  return replies.some(Boolean);
}

/** Keep a notebook's badges in step with its cells, their metadata and the store. */
function watchNotebook(
  panel: NotebookPanel,
  tracker: INotebookTracker,
  commands: JupyterFrontEnd['commands']
): void {
  const seen = new WeakSet<ICellModel>();
  let frame = 0;
  const schedule = (): void => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      const model = panel.content.model;
      if (!model) {
        return;
      }
      for (const cell of model.cells) {
        if (!seen.has(cell)) {
          seen.add(cell);
          cell.metadataChanged.connect(schedule);
        }
      }
      decorateCells(panel.content, commands, schedule);
    });
  };
  /** Re-check the approved cells' entries (`cells`: only those; default: all). */
  const check = (force = false, cells?: ICellModel[]): void => {
    const models = cells ?? [...(panel.content.model?.cells ?? [])];
    const keys = models
      .map(model => (model.type === 'code' ? materialisedMeta(model)?.key : undefined))
      .filter((key): key is string => !!key);
    if (keys.length) {
      void checkKeys(keys, force).then(changed => changed && schedule());
    }
  };
  const onEvent = (event: Event): void => {
    handleMaterialise(panel, event);
    check(true); // the approval just changed: its cells' badges too
  };
  const onFocus = (): void => {
    if (tracker.currentWidget === panel && !document.hidden) {
      check();
    }
  };
  const onStoreChanged = (): void => check(true);
  panel.node.addEventListener(MATERIALISE_EVENT, onEvent);
  window.addEventListener('focus', onFocus);
  document.addEventListener('visibilitychange', onFocus);
  window.addEventListener(STORE_CHANGED_EVENT, onStoreChanged);
  panel.content.activeCellChanged.connect((_, cell) => {
    if (cell && materialisedMeta(cell.model)) {
      check(true, [cell.model]); // selecting an approved cell: its state now
    }
  });
  const connectCells = (): void => {
    panel.content.model?.cells.changed.connect(schedule);
    schedule();
  };
  panel.content.modelChanged.connect(connectCells);
  connectCells();
  void panel.context.ready.then(() => {
    schedule();
    check(true);
  });
  panel.disposed.connect(() => {
    panel.node.removeEventListener(MATERIALISE_EVENT, onEvent);
    window.removeEventListener('focus', onFocus);
    document.removeEventListener('visibilitychange', onFocus);
    window.removeEventListener(STORE_CHANGED_EVENT, onStoreChanged);
    cancelAnimationFrame(frame);
  });
  watchers.set(panel, check);
}

/** Each notebook's `check`, for the plugin's page-wide triggers. */
const watchers = new WeakMap<NotebookPanel, (force?: boolean, cells?: ICellModel[]) => void>();

export const materialisePlugin: JupyterFrontEndPlugin<void> = {
  id: 'dataeng-magics:materialise',
  description:
    'Inserts approved cells below their %%transform cell, badged with their status and read-only.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null
  ): void => {
    const { commands } = app;
    tracker.forEach(panel => watchNotebook(panel, tracker, commands));
    tracker.widgetAdded.connect((_, panel) => watchNotebook(panel, tracker, commands));
    // Back to a notebook: its approved cells may have been revoked meanwhile.
    tracker.currentChanged.connect((_, panel) => panel && watchers.get(panel)?.());
    // A run of an approved cell (it may have just said "revoked"), or of any cell.
    NotebookActions.executed.connect((_, { notebook, cell }) => {
      const panel = tracker.find(p => p.content === notebook);
      if (panel && materialisedMeta(cell.model)) {
        watchers.get(panel)?.(true, [cell.model]);
      }
    });

    /** The active cell, if it is a materialised one (a right click activates a cell). */
    const targetCell = (): Cell | null => {
      const cell = tracker.currentWidget?.content.activeCell ?? null;
      return cell && cell.model.type === 'code' && materialisedMeta(cell.model) ? cell : null;
    };

    commands.addCommand(CommandIDs.unlockCell, {
      label: 'Unlock Approved Cell for Editing',
      caption: 'Make an approved, materialised cell editable',
      isEnabled: () => {
        const cell = targetCell();
        return !!cell && isLocked(cell.model);
      },
      execute: async () => {
        const cell = targetCell();
        if (!cell || !isLocked(cell.model)) {
          return;
        }
        const result = await showDialog({
          title: 'Unlock the approved cell?',
          body:
            'This cell holds approved code. If you edit it, %%transform_run refuses to ' +
            'run it until it matches the approval again (or a new plan is approved and ' +
            'materialised).',
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Unlock' })]
        });
        if (result.button.accept) {
          cell.model.setMetadata('editable', true);
        }
      }
    });
    commands.addCommand(CommandIDs.lockCell, {
      label: 'Lock Approved Cell',
      caption: 'Make an approved, materialised cell read-only again',
      isEnabled: () => {
        const cell = targetCell();
        return !!cell && !isLocked(cell.model);
      },
      execute: () => {
        targetCell()?.model.setMetadata('editable', false);
      }
    });
    const selector = `.jp-Notebook .jp-Cell.${MATERIALISED_CLASS}`;
    app.contextMenu.addItem({ command: CommandIDs.unlockCell, selector, rank: 0 });
    app.contextMenu.addItem({ command: CommandIDs.lockCell, selector, rank: 0 });
    for (const command of [CommandIDs.unlockCell, CommandIDs.lockCell]) {
      palette?.addItem({ command, category: 'Transformations' });
    }
  }
};
