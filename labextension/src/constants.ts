/**
 * Names shared by the plugins, and the contract with the Python side.
 *
 * The kernel never talks to this extension directly: the review panel's
 * `CellInserter` anywidget dispatches `MATERIALISE_EVENT` from its element in
 * the cell's output, and the notebook plugin below handles it. Without this
 * extension nobody listens, and `%transform materialise` is the way in.
 */

/** The DOM event the `CellInserter` widget dispatches (bubbling, cancelable). */
export const MATERIALISE_EVENT = 'dataeng-magics:materialise';

/** Cell metadata naming the approval a materialised cell belongs to. */
export const METADATA_KEY = 'dataeng_magics';

/** What `event.detail` carries; `result` is written back by the listener. */
export interface IMaterialiseRequest {
  cell: string;
  key: string;
  code_sha256: string;
  nonce: number;
  result?: MaterialiseResult;
}

/** `replaced`: an earlier approved cell of the same client and mapping was replaced. */
export type MaterialiseResult = 'inserted' | 'exists' | 'replaced';

/**
 * Dispatched on `window` when this page changed the store (a revocation from the
 * side panel), so notebooks re-check their approved cells at once.
 */
export const STORE_CHANGED_EVENT = 'dataeng-magics:store-changed';

/** The cell metadata stored under `METADATA_KEY`. */
export interface IMaterialisedMeta {
  key: string;
  code_sha256: string;
}

/** A `%%transform` cell (not `%%transform_run`). */
export const TRANSFORM_LINE = /^%%transform(?=\s|$)/;

/** A materialised cell's guard line. */
export const RUN_LINE = /^%%transform_run(?=\s|$)/;

export interface IFlag {
  flag: string;
  doc: string;
  values?: readonly string[];
  repeatable?: boolean;
}

/**
 * The flags of `%%transform`, as `dataeng_magics.commands.TRANSFORM_FLAGS` defines them
 * (tests/test_labextension.py compares the two, and `--platform`'s values with the
 * executors the package registers).
 */
export const TRANSFORM_FLAGS: readonly IFlag[] = [
  { flag: '--client', doc: 'client id (part of the cache key)' },
  { flag: '--mapping', doc: 'mapping workbook (.xlsx or .csv)' },
  {
    flag: '--source',
    doc: 'NAME=PATH: read source NAME from PATH (repeatable)',
    repeatable: true
  },
  { flag: '--output-dir', doc: 'where each target table is written (DIR/<TABLE>/)' },
  {
    flag: '--format',
    doc: 'output format (default: the output_format setting, parquet)',
    values: ['parquet', 'csv', 'delta']
  },
  {
    flag: '--platform',
    doc: 'where to run: local or a registered platform (default: the platform setting, local)',
    values: ['local', 'notebook', 'connect', 'fabric']
  },
  {
    flag: '--replay',
    doc: 'run the approved plan with no widgets and no planner (batch mode)'
  },
  {
    flag: '--reviewer',
    doc: 'name recorded on approval (default: the reviewer setting, else the Jupyter user)'
  },
  {
    flag: '--control',
    doc: 'SOURCE.rows=N|SOURCE.COLUMN=TOTAL[+-TOL]: a control total the client sent, checked against the source as read (repeatable)',
    repeatable: true
  }
];

export namespace CommandIDs {
  export const openPanel = 'dataeng-magics:open-panel';
  export const refreshPanel = 'dataeng-magics:refresh-panel';
  export const openEntry = 'dataeng-magics:open-entry';
  export const unlockCell = 'dataeng-magics:unlock-cell';
  export const lockCell = 'dataeng-magics:lock-cell';
}

/** What a materialised cell's guard line names. */
export interface IGuard extends IMaterialisedMeta {
  client: string;
  mapping: string;
}

/** A command line split as a POSIX shell would (the kernel writes it with `shlex.quote`). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  const token = /(?:[^\s'"\\]+|'[^']*'|"(?:[^"\\]|\\.)*"|\\.)+/g;
  for (let match = token.exec(line); match; match = token.exec(line)) {
    words.push(
      match[0].replace(/'([^']*)'|"((?:[^"\\]|\\.)*)"|\\(.)/g, (_, single, double, escaped) =>
        single !== undefined
          ? single
          : double !== undefined
            ? double.replace(/\\(.)/g, '$1')
            : escaped
      )
    );
  }
  return words;
}

/** Parse `--client C --mapping M --key K --code-sha256 S` out of a guard line. */
export function guardOf(source: string): IGuard | null {
  const line = source.split('\n', 1)[0];
  if (!RUN_LINE.test(line)) {
    return null;
  }
  const words = shellWords(line);
  const value = (flag: string): string | null => {
    const at = words.indexOf(flag);
    return at >= 0 && at + 1 < words.length ? words[at + 1] : null;
  };
  const [key, sha] = [value('--key'), value('--code-sha256')];
  return key && sha
    ? { key, code_sha256: sha, client: value('--client') ?? '', mapping: value('--mapping') ?? '' }
    : null;
}
