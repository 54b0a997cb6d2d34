/** Event Grid trigger for `Microsoft.ContainerRegistry.ImagePushed`; same parser as the webhook. */
import { handleEventGridEvent } from '../shared/pipeline/ingest.js';
import { getServices } from '../shared/pipeline/services.js';
import type { EventGridFunctionSpec } from './spec.js';

export const ingestEventGrid: EventGridFunctionSpec = {
  kind: 'eventgrid',
  name: 'ingest-eventgrid',
  async handler(event, context) {
    await handleEventGridEvent(getServices(), event, context.log.child({ stage: 'ingest' }));
  },
};
