import { LabIcon } from '@jupyterlab/ui-components';

const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M3 4h7v5H3zM14 15h7v5h-7zM3 15h7v5H3z"/>
    <path d="M6 9h1.5v6H6zM10 17h4v1.5h-4z"/>
    <path d="M15.2 7.6l1.4-1.4 1.6 1.6 3.2-3.2 1.4 1.4-4.6 4.6z"/>
  </g>
</svg>`;

/** The Transformations panel's tab icon. */
export const transformIcon = new LabIcon({ name: 'dataeng-magics:transformations', svgstr });
