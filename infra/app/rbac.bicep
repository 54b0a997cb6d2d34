// Role assignments of ccpipe's user-assigned identity, each the least role its operations need,
// each scoped to the one resource it is for (never the resource group or subscription), plus
// optional access for an operator (audits, failed queues, key rotation). Role ids are in
// roles.bicep.
//
// Not assigned, and why:
// - Storage Queue Data Contributor: the Functions host of a Flex Consumption app needs only
//   blobs (documented minimum: Storage Blob Data Owner); ccpipe's triggers are Service Bus and
//   Event Grid, and it uses no Storage queue, blob trigger or Durable Functions in Azure.
// - Storage Table Data Contributor: only persists the host's diagnostic events; not needed.
// - AKS Cluster User Role: it allows listing the cluster's user kubeconfig; the deployer is
//   given the API server URL and CA as settings and calls the API server with an Entra token
//   (app/aks-access.bicep grants it Azure RBAC for Kubernetes on its namespace).
// - Key Vault Crypto Service Release User: releasing keys is for the confidential workload's
//   own identity, never for ccpipe.
import { roles } from 'roles.bicep'

@description('Principal (object) id of the user-assigned identity.')
param principalId string

@description('Name of the container registry.')
param registryName string

@description('Name of the Service Bus namespace.')
param serviceBusName string

@description('Name of the Functions host storage account.')
param hostStorageName string

@description('Name of ccpipe\'s data storage account (runs, ledger).')
param dataStorageName string

@description('Name of the Key Vault.')
param keyVaultName string

@description('Name of the webhook secret in the vault.')
param webhookSecretName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Application keys live in this vault (false: in a Managed HSM, whose local RBAC is granted apart).')
param keysInVault bool = true

@description('Object id of an operator granted read access; empty: none.')
param operatorPrincipalId string = ''

@allowed(['User', 'Group', 'ServicePrincipal'])
@description('Kind of principal operatorPrincipalId is.')
param operatorPrincipalType string = 'User'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusName
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageName
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageName
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource webhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: keyVault
  name: webhookSecretName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// AcrPush: convert and encrypt read the pushed image and write <repo><suffix> and
// <repo><suffix>/encrypted. AcrPush includes pull, so AcrPull would add nothing.
resource acrPush 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, principalId, roles.acrPush)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPush)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Data Sender: every stage sends the next stage's message, and parks given-up messages in the
// <entity>-failed queues; the app sends to every entity, hence the namespace scope.
resource serviceBusSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(serviceBus.id, principalId, roles.serviceBusDataSender)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Data Receiver: the Service Bus triggers receive (and complete or abandon) from the stage
// queues and this app's subscription of the deployments topic.
resource serviceBusReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(serviceBus.id, principalId, roles.serviceBusDataReceiver)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Blob Data Contributor on the data account only: run records, policies, the ledger's append
// blob, and the lock blobs (acquiring and renewing a lease is a blob write).
resource dataBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage.id, principalId, roles.storageBlobDataContributor)
  scope: dataStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Blob Data Owner on the host account only: the role the Functions host documents for
// identity-based AzureWebJobsStorage (keys, locks, containers it creates); Flex Consumption also
// reads the deployment package from this account with the identity. ccpipe's data is not here.
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, principalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Crypto Officer: register creates each application's exportable RSA-HSM key, sets its release
// policy on every new measurement, recovers a soft-deleted key and rotates keys. It grants no
// access to secrets and no right to change access.
resource keyVaultCryptoOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (keysInVault) {
  name: guid(keyVault.id, principalId, roles.keyVaultCryptoOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultCryptoOfficer)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Secrets User on the one secret: the platform resolves CCPIPE_WEBHOOK_SECRET's Key Vault
// reference with this identity. No other secret is readable.
resource webhookSecretUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(webhookSecret.id, principalId, roles.keyVaultSecretsUser)
  scope: webhookSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Metrics Publisher: telemetry ingestion with Entra ID (the component has local auth off).
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Operator, read side: peek the -failed queues and dead-letter queues (Receiver also allows
// receiving, so operators should peek, as docs/deployment.md does).
resource operatorServiceBusReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(serviceBus.id, operatorPrincipalId, roles.serviceBusDataReceiver)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

// Operator: `ccpipe ledger verify` and `ccpipe verify` read runs and the ledger.
resource operatorDataReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(dataStorage.id, operatorPrincipalId, roles.storageBlobDataReader)
  scope: dataStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

// Operator: `ccpipe keys rotate` and `ccpipe verify` (reads release policies) on the vault.
resource operatorCryptoOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId) && keysInVault) {
  name: guid(keyVault.id, operatorPrincipalId, roles.keyVaultCryptoOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultCryptoOfficer)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}
