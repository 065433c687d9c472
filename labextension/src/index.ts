/**
 * dataeng_magics in JupyterLab (and Notebook 7): the Transformations side panel,
 * `%%transform` cells in the editor (highlighting, flag completion), and approved
 * cells inserted below their `%%transform` cell. The magics work without it.
 */
import { JupyterFrontEndPlugin } from '@jupyterlab/application';

import { completerPlugin } from './completer';
import { editorPlugin } from './editor';
import { materialisePlugin } from './materialise';
import { panelPlugin } from './panel';

const plugins: JupyterFrontEndPlugin<void>[] = [
  panelPlugin,
  editorPlugin,
  completerPlugin,
  materialisePlugin
];

export default plugins;
