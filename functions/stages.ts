/** Queue triggers for the four stages; the deploy stage reads the `deployments` queue. */
import { QUEUES, type QueueName } from '../shared/contracts/index.js';
import type { StageName } from '../shared/runs/run-record.js';
import { getServices } from '../shared/pipeline/services.js';
import { handlePoisonedMessage, handleStageMessage } from '../shared/pipeline/stages.js';
import type { QueueFunctionSpec } from './spec.js';

function stageFunction(stage: StageName, queue: QueueName): QueueFunctionSpec {
  return {
    kind: 'queue',
    name: stage,
    queue,
    handler: (body, context) =>
      handleStageMessage(getServices(), stage, {
        body,
        messageId: context.messageId ?? context.invocationId,
        log: context.log,
      }),
    onPoison: (body, reason, context) =>
      handlePoisonedMessage(getServices(), stage, body, reason, context.log),
  };
}

export const convert = stageFunction('convert', QUEUES.convert);
export const encrypt = stageFunction('encrypt', QUEUES.encrypt);
export const register = stageFunction('register', QUEUES.register);
export const deploy = stageFunction('deploy', QUEUES.deployments);
