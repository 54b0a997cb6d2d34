/**
 * Events that can never start a run, kept with the reason instead of being lost.
 *
 * An HTTP webhook answers such an event with a 4xx and its sender keeps it. An Event Grid
 * trigger has no such answer: a failing function is retried for up to 24 hours and the event
 * is then dropped (no dead-letter destination is configured). So the Event Grid path stores a
 * malformed or refused event as a blob `rejected-events/<yyyy-mm-dd>/<sha256 of the event>.json`
 * in the runs container, with the reason and the time, and returns normally.
 */
import { createHash } from 'node:crypto';
import { CcpipeError, describeError, isCcpipeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Services } from './services.js';

export const REJECTED_EVENTS_PREFIX = 'rejected-events/';

/** What a rejected-event blob holds. */
export interface RejectedEvent {
  version: 1;
  receivedAt: string;
  reason: string;
  /** The event as delivered (untrusted; never contains ccpipe's secrets). */
  event: unknown;
}

/** True for failures that no retry can cure: the event itself is malformed or refused. */
export function isRejection(err: unknown): err is CcpipeError {
  return isCcpipeError(err) && !err.retryable &&
    ['INVALID_INPUT', 'FORBIDDEN', 'UNSUPPORTED'].includes(err.code);
}

/** Stores `event` with the reason `err`; the same event rejected twice is stored once. */
export async function keepRejectedEvent(
  services: Services,
  event: unknown,
  err: CcpipeError,
  log: Logger,
): Promise<string> {
  const text = JSON.stringify(event) ?? 'null';
  const hash = createHash('sha256').update(text).digest('hex');
  const receivedAt = new Date().toISOString();
  const name = `${REJECTED_EVENTS_PREFIX}${receivedAt.slice(0, 10)}/${hash}.json`;
  const record: RejectedEvent = { version: 1, receivedAt, reason: describeError(err), event };

  const body = JSON.stringify(record, null, 2);
  try {
    await services.artefacts.getBlockBlobClient(name).upload(body, Buffer.byteLength(body), {
      blobHTTPHeaders: { blobContentType: 'application/json' },
    });
  } catch (cause) {
    throw new CcpipeError('UPSTREAM', `could not keep rejected event ${hash}`, { cause });
  }

  log.error('event rejected; kept for inspection', { blob: name, reason: record.reason });
  return name;
}
