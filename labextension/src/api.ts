/**
 * The REST API of the server extension (`dataeng_magics/server.py`).
 *
 * Requests go through `ServerConnection`, so they carry the server's own
 * authentication (token or cookie, and the XSRF header for POST).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export type Status = 'draft' | 'approved' | 'rejected' | 'revoked';

export interface IEntrySummary {
  key: string;
  client: string;
  status: Status;
  reviewer: string | null;
  revoked_by: string | null;
  approved_at: string | null;
  runs: number;
  last_outcome: string | null;
  last_run_at: string | null;
  updated_at: string;
  mapping_file: string;
  /** A run of it going on now ("running"), or one whose lease lapsed ("interrupted"). */
  run_state?: RunState | null;
}

export type RunState = 'running' | 'interrupted';

export interface IEntryDetail extends IEntrySummary {
  pseudocode: string;
  code: string;
  plan_sha256: string;
  code_sha256: string;
  reason: string | null;
  created_at: string;
}

/** What a revision asked and changed (from the entry's conversation). */
export interface IRevision {
  request: string;
  reply: string;
  changes: string[];
}

export interface IAuditEvent {
  seq: number;
  time: string;
  event: string;
  actor: string;
  client: string | null;
  key: string | null;
  plan_sha256: string | null;
  code_sha256: string | null;
  details: Record<string, unknown>;
  /** Only on "revision" events; null where the conversation does not hold it. */
  revision?: IRevision | null;
}

export interface IRunRecord {
  id: number;
  started_at: string;
  finished_at: string;
  outcome: string;
  platform: string;
  rows_in: number | null;
  rows_out: number | null;
  seconds: number;
}

export interface IListReply {
  entries: IEntrySummary[];
  clients: string[];
  home: string;
}

export interface IDetailReply {
  entry: IEntryDetail;
  events: IAuditEvent[];
  runs: IRunRecord[];
}

async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'dataeng-magics', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: unknown = {};
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text };
    }
  }
  if (!response.ok) {
    const message = (data as { message?: string }).message;
    throw new ServerConnection.ResponseError(response, message || response.statusText);
  }
  return data as T;
}

export function listEntries(client?: string): Promise<IListReply> {
  const query = client ? `?client=${encodeURIComponent(client)}` : '';
  return request<IListReply>(`entries${query}`);
}

export function getEntry(key: string): Promise<IDetailReply> {
  return request<IDetailReply>(`entries/${encodeURIComponent(key)}`);
}

/** The last event of a kind, if any (events come oldest first). */
export function lastEvent(events: IAuditEvent[], kind: string): IAuditEvent | undefined {
  return [...events].reverse().find(event => event.event === kind);
}

export function revokeEntry(key: string, reason: string): Promise<{ entry: IEntryDetail }> {
  return request(`entries/${encodeURIComponent(key)}/revoke`, {
    method: 'POST',
    body: JSON.stringify({ reason })
  });
}
