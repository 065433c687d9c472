/**
 * `%%transform` cells in the editor: the magic line and its flags stand out, and
 * the body reads as the plain-English notes it is rather than as Python.
 * Materialised cells' guard lines (`%%transform_run ...`) are marked too.
 */
import { RangeSetBuilder } from '@codemirror/state';
import {
  Decoration,
  DecorationSet,
  EditorView,
  ViewPlugin,
  ViewUpdate
} from '@codemirror/view';
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { EditorExtensionRegistry, IEditorExtensionRegistry } from '@jupyterlab/codemirror';

import { RUN_LINE, TRANSFORM_FLAGS, TRANSFORM_LINE } from './constants';

const KNOWN = new Set(TRANSFORM_FLAGS.map(f => f.flag));
const transformLine = Decoration.line({ class: 'dem-cm-transform-line' });
const runLine = Decoration.line({ class: 'dem-cm-run-line' });
const notesLine = Decoration.line({ class: 'dem-cm-notes' });
const magicMark = Decoration.mark({ class: 'dem-cm-magic' });
const flagMark = Decoration.mark({ class: 'dem-cm-flag' });
const unknownFlagMark = Decoration.mark({
  class: 'dem-cm-flag dem-cm-flag-unknown',
  attributes: { title: 'not a %%transform flag' }
});

/** The decorations of a document: none unless its first line is one of our magics. */
export function transformDecorations(view: EditorView): DecorationSet {
  const doc = view.state.doc;
  const first = doc.line(1);
  const isTransform = TRANSFORM_LINE.test(first.text);
  if (!isTransform && !RUN_LINE.test(first.text)) {
    return Decoration.none;
  }
  const builder = new RangeSetBuilder<Decoration>();
  builder.add(first.from, first.from, isTransform ? transformLine : runLine);
  const magic = first.text.split(/\s/, 1)[0];
  builder.add(first.from, first.from + magic.length, magicMark);
  const flags = /(?:^|\s)(--[A-Za-z][\w-]*)/g;
  for (let match = flags.exec(first.text); match; match = flags.exec(first.text)) {
    const start = first.from + match.index + match[0].length - match[1].length;
    const known = !isTransform || KNOWN.has(match[1]);
    builder.add(start, start + match[1].length, known ? flagMark : unknownFlagMark);
  }
  if (isTransform) {
    for (let number = 2; number <= doc.lines; number++) {
      const line = doc.line(number);
      builder.add(line.from, line.from, notesLine);
    }
  }
  return builder.finish();
}

/** Re-decorates on every document change; the work is one pass over the cell. */
export const transformCells = ViewPlugin.fromClass(
  class {
    decorations: DecorationSet;

    constructor(view: EditorView) {
      this.decorations = transformDecorations(view);
    }

    update(update: ViewUpdate): void {
      if (update.docChanged) {
        this.decorations = transformDecorations(update.view);
      }
    }
  },
  { decorations: plugin => plugin.decorations }
);

export const editorPlugin: JupyterFrontEndPlugin<void> = {
  id: 'dataeng-magics:editor',
  description: 'Highlights %%transform cells: the magic line, its flags and the notes.',
  autoStart: true,
  requires: [IEditorExtensionRegistry],
  activate: (_app: JupyterFrontEnd, registry: IEditorExtensionRegistry): void => {
    registry.addExtension({
      name: 'dataeng-magics:transform-cells',
      factory: () => EditorExtensionRegistry.createImmutableExtension(transformCells)
    });
  }
};
