/** The registration table: every function ccpipe has, for the Azure host and the local host. */
import { ingestEventGrid } from './ingest-eventgrid.js';
import { redeployHttp, redeployQueue } from './redeploy.js';
import { registryEvents } from './registry-events.js';
import { runs } from './runs.js';
import type { FunctionSpec } from './spec.js';
import { convert, deploy, encrypt, register } from './stages.js';

export const FUNCTIONS: readonly FunctionSpec[] = [
  registryEvents,
  runs,
  ingestEventGrid,
  convert,
  encrypt,
  register,
  deploy,
  redeployHttp,
  redeployQueue,
];
