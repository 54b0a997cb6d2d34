// Key Vault Premium (HSM-backed keys, needed for secure key release) with Azure RBAC
// authorization, purge protection, and the webhook secret the Function App reads through a Key
// Vault reference.
//
// TODO: a Managed HSM option. Its data plane (local RBAC) and activation (security domain
// download with an operator's RSA keys) cannot be expressed in Bicep; an existing, activated
// Managed HSM can be used instead of this vault for application keys (main.bicep managedHsmUri),
// with its roles granted as docs/deployment.md shows.

@description('Name of the vault (3-24 characters).')
param name string

@description('Azure region.')
param location string

@description('Tags for the resources.')
param tags object

@secure()
@description('Value of the webhook secret.')
param webhookSecret string

@description('Name of the secret holding the webhook secret.')
param webhookSecretName string = 'ccpipe-webhook-secret'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'premium'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: webhookSecretName
  properties: {
    value: webhookSecret
    contentType: 'text/plain'
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
output webhookSecretName string = secret.name
// Unversioned: the reference follows rotation (the platform refreshes it, or on restart).
output webhookSecretUri string = secret.properties.secretUri
