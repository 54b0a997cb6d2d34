// Azure Container Registry (admin user off: pushes and pulls use Entra ID) and its Event Grid
// system topic, which app/acr-events.bicep subscribes the ingest-eventgrid function to.
//
// NOTE: a registry in "ABAC repository permissions" mode ignores AcrPush/AcrPull; it needs the
// Container Registry Repository Writer/Reader roles instead. This API version creates registries
// in the default (non-ABAC) mode.

@description('Name of the registry (5-50 letters and digits).')
param name string

@description('Azure region.')
param location string

@description('Tags for the resources.')
param tags object

@allowed(['Standard', 'Premium'])
@description('Registry SKU; Premium adds geo-replication, private endpoints and retention policies.')
param sku string = 'Standard'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: name
  location: location
  tags: tags
  sku: { name: sku }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: '${name}-events'
  location: location
  tags: tags
  properties: {
    source: registry.id
    topicType: 'Microsoft.ContainerRegistry.Registries'
  }
}

output name string = registry.name
output id string = registry.id
output loginServer string = registry.properties.loginServer
output systemTopicName string = systemTopic.name
