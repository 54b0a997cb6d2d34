// Service Bus namespace and every entity ccpipe uses (shared/contracts/messages.ts QUEUES and the
// Service Bus bus adapter):
//
// - queues convert, encrypt, register, redeploy-requests: one per stage;
// - topic deployments: one subscription per cluster, filtered on the application property
//   `cluster`, so each deployer reads only its own cluster's deployments;
// - queues <entity>-failed: where ccpipe parks a message it gives up on, with the reason as the
//   application property `reason` (a JavaScript trigger cannot dead-letter).
//
// Every entity detects duplicates (message ids are deterministic), locks for 5 minutes (the
// maximum; host.json renews the lock for as long as a function may run) and is not sessionful.
// Local (SAS key) auth is disabled: senders and triggers use Entra ID.

@description('Name of the namespace.')
param name string

@description('Azure region.')
param location string

@description('Tags for the resources.')
param tags object

@allowed(['Standard', 'Premium'])
@description('Namespace SKU; Standard is the smallest with topics and duplicate detection.')
param sku string = 'Standard'

@minLength(1)
@description('Cluster names: each gets a subscription of the same name on the deployments topic.')
param clusterNames array

@description('How long the broker remembers message ids to drop duplicates (ISO 8601).')
param duplicateDetectionWindow string = 'PT1H'

@description('How long a message waits before it expires into the dead-letter queue (ISO 8601).')
param messageTimeToLive string = 'P14D'

// ccpipe parks a message in <entity>-failed after CCPIPE_MAX_DEQUEUE_COUNT (5) deliveries; the
// broker's own limit must be higher so that ccpipe's path, which records the reason, runs
// first and the dead-letter queue stays a backstop (abandon on crash, lock lost, and so on).
var maxDeliveryCount = 10

var stageQueues = ['convert', 'encrypt', 'register', 'redeploy-requests']
var deploymentsTopic = 'deployments'
var failedQueues = [
  'convert-failed'
  'encrypt-failed'
  'register-failed'
  'redeploy-requests-failed'
  'deployments-failed'
]

var deliveryProperties = {
  lockDuration: 'PT5M'
  maxDeliveryCount: maxDeliveryCount
  requiresSession: false
  deadLetteringOnMessageExpiration: true
  defaultMessageTimeToLive: messageTimeToLive
}

var queueProperties = union(deliveryProperties, {
  requiresDuplicateDetection: true
  duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
})

var skuSettings = sku == 'Premium' ? { name: 'Premium', tier: 'Premium', capacity: 1 } : { name: 'Standard', tier: 'Standard' }

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: skuSettings
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [
  for queue in concat(stageQueues, failedQueues): {
    parent: namespace
    name: queue
    properties: queueProperties
  }
]

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: namespace
  name: deploymentsTopic
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    defaultMessageTimeToLive: messageTimeToLive
    supportOrdering: false
  }
}

resource subscriptions 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = [
  for cluster in clusterNames: {
    parent: topic
    name: cluster
    properties: union(deliveryProperties, {
      deadLetteringOnFilterEvaluationExceptions: true
    })
  }
]

// Every new subscription starts with a rule `$Default` whose true filter passes every message.
// Writing our correlation filter under that name replaces it, so the subscription receives
// only messages whose application property `cluster` is its cluster (no catch-all rule left).
resource clusterFilters 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = [
  for (cluster, i) in clusterNames: {
    parent: subscriptions[i]
    name: '$Default'
    properties: {
      filterType: 'CorrelationFilter'
      correlationFilter: {
        properties: {
          cluster: cluster
        }
      }
    }
  }
]

output name string = namespace.name
output id string = namespace.id
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
