/**
 * Entry points for the queue-triggered stages: parse the message, run the stage, and, when a
 * message is given up on, record the run as failed with the reason.
 */
import {
  parseMessage,
  type DeploymentMessage,
  type PipelineMessage,
} from '../contracts/index.js';
import type { Logger } from '../log.js';
import type { StageName } from '../runs/run-record.js';
import { convertStage } from './convert.js';
import { deployToCluster, handlePoisonedDeployment } from './cluster-deploy.js';
import { encryptStage } from './encrypt.js';
import { registerStage } from './register.js';
import type { Services } from './services.js';
import { markRunFailed, runStage } from './stage-runner.js';

const MESSAGE_TYPE: Record<StageName, PipelineMessage['type']> = {
  convert: 'ccpipe.convert',
  encrypt: 'ccpipe.encrypt',
  register: 'ccpipe.register',
  deploy: 'ccpipe.deployment',
};

export interface Delivery {
  body: string;
  messageId: string;
  log: Logger;
}

export async function handleStageMessage(
  services: Services,
  stage: StageName,
  delivery: Delivery,
): Promise<void> {
  const message: PipelineMessage = parseMessage(delivery.body, MESSAGE_TYPE[stage]);
  const { messageId, log } = delivery;
  const invocation = { stage, runId: message.runId, messageId, log };

  switch (message.type) {
    case 'ccpipe.convert':
      return runStage(services, invocation, convertStage(services));
    case 'ccpipe.encrypt':
      return runStage(services, invocation, encryptStage(services));
    case 'ccpipe.register':
      return runStage(services, invocation, registerStage(services));
    case 'ccpipe.deployment':
      return deployToCluster(services, message, { messageId, log });
  }
}

/** The message went to the poison queue: the run it names, if any, fails with the reason. */
export async function handlePoisonedMessage(
  services: Services,
  stage: StageName,
  body: string,
  reason: string,
  log: Logger,
): Promise<void> {
  const deployment = stage === 'deploy' ? deploymentOf(body) : undefined;
  if (deployment) return handlePoisonedDeployment(services, deployment, reason, log);

  const runId = runIdOf(body);
  if (!runId) {
    log.warn('poisoned message names no run', { stage, reason });
    return;
  }
  await markRunFailed(services, runId, stage, reason);
  log.error('run failed', { runId, stage, reason });
}

/** The deployment message in a body, if it is one (the cluster decides what fails). */
function deploymentOf(body: string): DeploymentMessage | undefined {
  try {
    return parseMessage(body, 'ccpipe.deployment');
  } catch {
    return undefined;
  }
}

function runIdOf(body: string): string | undefined {
  try {
    const value = JSON.parse(body) as { runId?: unknown };
    return typeof value.runId === 'string' && /^[a-f0-9]{32}$/.test(value.runId)
      ? value.runId
      : undefined;
  } catch {
    return undefined;
  }
}
