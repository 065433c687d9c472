/**
 * Approved cells: inserted below their `%%transform` cell when the review panel
 * approves or materialises, badged, and read-only until explicitly unlocked.
 *
 * The kernel side only dispatches a DOM event from the review panel's
 * `CellInserter` widget; inserting through the notebook model (rather than the
 * kernel's `set_next_input`) lets the cell land right below the panel with
 * metadata naming its approval, and lets a second approval of the same code
 * find the cell already there.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, showDialog } from '@jupyterlab/apputils';
import { Cell, ICellModel } from '@jupyterlab/cells';
import { INotebookModel, INotebookTracker, Notebook, NotebookPanel } from '@jupyterlab/notebook';

import {
  CommandIDs,
  IMaterialiseRequest,
  IMaterialisedMeta,
  MATERIALISE_EVENT,
  METADATA_KEY,
  guardOf
} from './constants';

const MATERIALISED_CLASS = 'dem-materialised';
/** Cells waited for once already (see `decorateCells`). */
const waiting = new WeakSet<Cell>();
const BADGE_CLASS = 'dem-ApprovedBadge';

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
  model.sharedModel.insertCell(index + 1, {
    cell_type: 'code',
    source: detail.cell,
    metadata: { [METADATA_KEY]: { ...metadata }, editable: false },
    outputs: [],
    execution_count: null
  });
  detail.result = 'inserted';
  notebook.activeCellIndex = index + 1;
}

function badgeText(meta: IMaterialisedMeta, locked: boolean): string {
  return (
    `Approved transformation · key ${meta.key.slice(0, 12)} · code ${meta.code_sha256.slice(0, 12)}` +
    (locked ? ' · read-only' : ' · unlocked: an edited cell refuses to run')
  );
}

/**
 * Badge (or un-badge) every cell of a notebook to match its metadata. A cell the
 * windowed notebook has not rendered yet is decorated once it is (`later`).
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
    badge.dataset.key = meta.key;
    badge.dataset.locked = String(locked);
    badge.querySelector(`.${BADGE_CLASS}-label`)!.textContent = `✔ ${badgeText(meta, locked)}`;
    badge.querySelector(`.${BADGE_CLASS}-toggle`)!.textContent = locked ? 'Unlock' : 'Lock';
    badge.title =
      `key ${meta.key}\ncode sha256 ${meta.code_sha256}\n` +
      '%%transform_run refuses to run this cell if its code no longer matches the approval.';
  }
}

/** Keep a notebook's badges in step with its cells and their metadata. */
function watchNotebook(panel: NotebookPanel, commands: JupyterFrontEnd['commands']): void {
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
  const onEvent = (event: Event): void => handleMaterialise(panel, event);
  panel.node.addEventListener(MATERIALISE_EVENT, onEvent);
  const connectCells = (): void => {
    panel.content.model?.cells.changed.connect(schedule);
    schedule();
  };
  panel.content.modelChanged.connect(connectCells);
  connectCells();
  void panel.context.ready.then(schedule);
  panel.disposed.connect(() => {
    panel.node.removeEventListener(MATERIALISE_EVENT, onEvent);
    cancelAnimationFrame(frame);
  });
}

export const materialisePlugin: JupyterFrontEndPlugin<void> = {
  id: 'dataeng-magics:materialise',
  description: 'Inserts approved cells below their %%transform cell, badged and read-only.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null
  ): void => {
    const { commands } = app;
    tracker.forEach(panel => watchNotebook(panel, commands));
    tracker.widgetAdded.connect((_, panel) => watchNotebook(panel, commands));

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
