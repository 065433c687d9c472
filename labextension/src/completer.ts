/**
 * Completes the flags of `%%transform` (and the values of `--format` and
 * `--platform`) on the magic line, beside the kernel's own completions.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  CompletionHandler,
  ICompletionContext,
  ICompletionProvider,
  ICompletionProviderManager
} from '@jupyterlab/completer';

import { TRANSFORM_FLAGS, TRANSFORM_LINE } from './constants';

type Reply = CompletionHandler.ICompletionItemsReply;

/** Completions at `offset` in a cell's `text`: flags, or a flag's known values. */
export function completeTransform(text: string, offset: number): Reply {
  const lineEnd = text.indexOf('\n');
  const line = lineEnd < 0 ? text : text.slice(0, lineEnd);
  let start = offset;
  while (start > 0 && !/\s/.test(text[start - 1])) {
    start--;
  }
  const none: Reply = { start: offset, end: offset, items: [] };
  if (!TRANSFORM_LINE.test(line) || offset > line.length || start === 0) {
    return none;
  }
  const token = text.slice(start, offset);
  const before = text.slice(0, start).trim().split(/\s+/);
  const previous = TRANSFORM_FLAGS.find(f => f.flag === before[before.length - 1]);
  if (previous?.values && !token.startsWith('-')) {
    const items = previous.values
      .filter(value => value.startsWith(token))
      .map(value => ({ label: value, type: 'value', documentation: previous.doc }));
    return { start, end: offset, items };
  }
  if (token && !token.startsWith('-')) {
    return none;
  }
  const used = new Set(line.split(/\s+/));
  const items = TRANSFORM_FLAGS.filter(
    f => f.flag.startsWith(token) && (f.repeatable || !used.has(f.flag) || f.flag === token)
  ).map(f => ({ label: f.flag, type: 'flag', documentation: f.doc }));
  return { start, end: offset, items };
}

export class TransformFlagsProvider implements ICompletionProvider {
  readonly identifier = 'dataeng-magics:transform-flags';
  readonly rank = 1000;
  readonly renderer = null;

  async isApplicable(context: ICompletionContext): Promise<boolean> {
    return Boolean(context.editor);
  }

  async fetch(request: CompletionHandler.IRequest): Promise<Reply> {
    return completeTransform(request.text, request.offset);
  }
}

export const completerPlugin: JupyterFrontEndPlugin<void> = {
  id: 'dataeng-magics:completer',
  description: 'Completes the flags of %%transform.',
  autoStart: true,
  requires: [ICompletionProviderManager],
  activate: (_app: JupyterFrontEnd, manager: ICompletionProviderManager): void => {
    manager.registerProvider(new TransformFlagsProvider());
  }
};
