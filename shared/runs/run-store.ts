import type { ContainerClient } from '@azure/storage-blob';
import { CcpipeError, statusOf } from '../errors.js';
import type { RunRecord } from './run-record.js';

export interface StoredRun {
  run: RunRecord;
  etag: string;
}

/**
 * Run records in a Blob container. `create` succeeds once per run id; `update` applies a change
 * under an ETag condition and retries on a lost race with the fresh record.
 */
export class RunStore {
  constructor(private readonly container: ContainerClient) {}

  async init(): Promise<void> {
    await this.container.createIfNotExists();
  }

  /** Creates the record; returns `undefined` if a run with this id already exists. */
  async create(run: RunRecord): Promise<StoredRun | undefined> {
    const body = JSON.stringify(run, null, 2);
    const blob = this.blob(run.runId);
    try {
      const res = await blob.upload(body, Buffer.byteLength(body), {
        conditions: { ifNoneMatch: '*' },
        blobHTTPHeaders: { blobContentType: 'application/json' },
      });
      return { run, etag: res.etag ?? '' };
    } catch (err) {
      if (statusOf(err) === 409) return undefined;
      throw storageError(`create run ${run.runId}`, err);
    }
  }

  async get(runId: string): Promise<StoredRun | undefined> {
    const blob = this.blob(runId);
    try {
      const res = await blob.download();
      const text = await streamText(res.readableStreamBody);
      return { run: JSON.parse(text) as RunRecord, etag: res.etag ?? '' };
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw storageError(`read run ${runId}`, err);
    }
  }

  /**
   * Applies `change` to the current record and writes it if nobody else wrote in between;
   * on a lost race it re-reads and applies `change` again (at most `attempts` times).
   * `change` may return `undefined` to leave the record as it is.
   */
  async update(
    runId: string,
    change: (run: RunRecord) => RunRecord | undefined,
    attempts = 5,
  ): Promise<RunRecord> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.get(runId);
      if (!current) throw new CcpipeError('NOT_FOUND', `run ${runId} has no record`);

      const next = change(structuredClone(current.run));
      if (!next) return current.run;

      next.updatedAt = new Date().toISOString();
      if (await this.replace(next, current.etag)) return next;
      if (attempt >= attempts) {
        throw new CcpipeError('CONFLICT', `run ${runId} kept changing under ${attempts} updates`);
      }
    }
  }

  private async replace(run: RunRecord, etag: string): Promise<boolean> {
    const body = JSON.stringify(run, null, 2);
    const blob = this.blob(run.runId);
    try {
      await blob.upload(body, Buffer.byteLength(body), {
        conditions: { ifMatch: etag },
        blobHTTPHeaders: { blobContentType: 'application/json' },
      });
      return true;
    } catch (err) {
      if (statusOf(err) === 412) return false;
      throw storageError(`update run ${run.runId}`, err);
    }
  }

  private blob(runId: string) {
    if (!/^[a-f0-9]{32}$/.test(runId)) {
      throw new CcpipeError('INVALID_INPUT', `run id "${runId.slice(0, 40)}" is malformed`);
    }
    return this.container.getBlockBlobClient(`runs/${runId}.json`);
  }
}

function storageError(action: string, cause: unknown): CcpipeError {
  return new CcpipeError('UPSTREAM', `blob storage failed to ${action}`, { cause });
}

export async function streamText(stream: NodeJS.ReadableStream | undefined): Promise<string> {
  if (!stream) return '';
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
