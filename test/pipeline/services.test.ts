import { describe, expect, it } from 'vitest';
import { ServiceBusBus } from '../../shared/adapters/azure/service-bus-bus.js';
import { KeyVaultKeyStore } from '../../shared/adapters/azure/key-vault-store.js';
import { LocalCluster } from '../../shared/adapters/local/cluster.js';
import { LocalKeyStore } from '../../shared/adapters/local/key-store.js';
import { QueueBus } from '../../shared/adapters/local/queue-bus.js';
import { loadConfig } from '../../shared/config.js';
import { silentLogger } from '../../shared/log.js';
import { createServices } from '../../shared/pipeline/services.js';

// Building services makes no request; these tests only look at which adapters were chosen.
const local = { CCPIPE_WEBHOOK_SECRET: 's', CCPIPE_DATA_DIR: '/tmp/ccpipe-services-test' };
const CA = Buffer.from('-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n')
  .toString('base64');

describe('createServices', () => {
  it('uses the local adapters when no Azure setting is given', async () => {
    const services = createServices(loadConfig(local), silentLogger);
    expect(services.bus).toBeInstanceOf(QueueBus);
    expect(services.keys).toBeInstanceOf(LocalKeyStore);
    expect(services.cluster).toBeInstanceOf(LocalCluster);
    expect(services.artefacts.url).toContain('127.0.0.1:10000');
  });

  it('uses the Azure adapters, identity-based, for each Azure setting', async () => {
    const services = createServices(loadConfig({
      ...local,
      CCPIPE_STORAGE_BLOB_URL: 'https://acct.blob.core.windows.net',
      CCPIPE_SERVICE_BUS_NAMESPACE: 'ns.servicebus.windows.net',
      CCPIPE_KEY_VAULT_URL: 'https://vault.vault.azure.net',
      CCPIPE_KUBE_SERVER_URL: 'https://aks.hcp.example.azmk8s.io:443',
      CCPIPE_KUBE_CA_BASE64: CA,
    }), silentLogger);

    expect(services.bus).toBeInstanceOf(ServiceBusBus);
    expect(services.keys).toBeInstanceOf(KeyVaultKeyStore);
    expect(services.cluster).not.toBeInstanceOf(LocalCluster);
    expect(services.artefacts.url).toBe('https://acct.blob.core.windows.net/ccpipe-runs');
    await (services.bus as ServiceBusBus).close();
  });

  it('refuses an AKS server without its CA', () => {
    const config = loadConfig({ ...local, CCPIPE_KUBE_SERVER_URL: 'https://aks.example:443' });
    expect(() => createServices(config, silentLogger)).toThrow(/CCPIPE_KUBE_CA_BASE64 is required/);
  });

  it('validates the Azure settings at start-up', () => {
    expect(() => loadConfig({ ...local, CCPIPE_SERVICE_BUS_NAMESPACE: 'sb://x/' }))
      .toThrow(/CCPIPE_SERVICE_BUS_NAMESPACE must be a host name/);
    expect(() => loadConfig({ ...local, CCPIPE_STORAGE_BLOB_URL: 'http://acct.example' }))
      .toThrow(/CCPIPE_STORAGE_BLOB_URL must be an https URL/);
    expect(() => loadConfig({ ...local, CCPIPE_CLUSTER_NAME: 'Prod_1' }))
      .toThrow(/CCPIPE_CLUSTER_NAME must be a DNS-1123 label/);
  });
});
