import { it } from 'vitest';
import { loadInfra, appSettings } from './infra-model.js';
it('smoke', () => {
  const m = loadInfra({ deployAks: true, confidentialNodePool: true, eventSubscriptionEnabled: true, additionalClusterNames: 'west, ,east' });
  console.log(m.resources.map((r) => `${r.file} ${r.symbol} ${r.type} ${r.existing ? 'existing' : ''} ${String(r.body.name)}`).join('\n'));
  console.log(appSettings(m).CCPIPE_KUBE_CA_BASE64, m.resources.filter(r=>r.type.endsWith('roleAssignments')).map(r=>[r.file,r.symbol,r.body.properties, r.body.scope]));
  
});
