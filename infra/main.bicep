// ccpipe on Azure, provisioned by `azd up` (see docs/deployment.md):
//
//   ACR push ─(Event Grid ImagePushed)─> ingest-eventgrid ─┐
//   other registry ─(webhook + secret)─> ingest-webhook ───┴> Service Bus queues convert, encrypt,
//   register ─> topic deployments (one subscription per cluster) ─> deploy ─> AKS virtual nodes
//
// Everything authenticates with one user-assigned managed identity: no connection string, account
// key or shared access key appears in an app setting, and local (key) auth is disabled on
// Storage, Service Bus, Application Insights and the registry's admin user.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Azure region of every resource. It must offer Flex Consumption and, for confidential pods, confidential virtual nodes.')
@metadata({ azd: { type: 'location' } })
param location string

@secure()
@minLength(16)
@description('Shared secret every webhook call must carry; stored only in Key Vault (the preprovision hook generates one).')
param webhookSecret string

@description('Suffix of output repositories (CCPIPE_OUTPUT_SUFFIX); Event Grid filters these pushes out.')
param outputSuffix string = '-cc'

@description('Configuration version mixed into every run id (CCPIPE_CONFIG_VERSION); bump it to re-run images.')
param configVersion string = '1'

@description('Microsoft Azure Attestation endpoint named in key release policies (CCPIPE_MAA_ENDPOINT).')
param maaEndpoint string = 'https://sharedeus2.eus2.attest.azure.net'

@description('Kubernetes namespace ccpipe deploys to (CCPIPE_NAMESPACE); the deployer may write only there.')
param kubernetesNamespace string = 'ccpipe-apps'

@minValue(1)
@maxValue(16)
@description('Layers processed at once per image (CCPIPE_LAYER_CONCURRENCY).')
param layerConcurrency int = 2

@minValue(1)
@maxValue(10)
@description('Measurements a key\'s release policy keeps: the newest and those before it, for rollbacks (CCPIPE_KEEP_MEASUREMENTS).')
param keepMeasurements int = 2

@description('Secure key release sidecar pinned by digest, e.g. a mirror of mcr.microsoft.com/aci/skr in an allowed registry; empty = no sidecar (CCPIPE_SKR_SIDECAR_IMAGE).')
param skrSidecarImage string = ''

@allowed(['debug', 'info', 'warn', 'error'])
@description('ccpipe log level (CCPIPE_LOG_LEVEL).')
param logLevel string = 'info'

@description('Origins allowed by the CloudEvents webhook handshake, comma-separated (CCPIPE_CLOUDEVENTS_ORIGINS).')
param cloudEventsOrigins string = 'eventgrid.azure.net'

@description('Write key release policies as immutable (CCPIPE_KEY_VAULT_IMMUTABLE_POLICY).')
param keyVaultImmutablePolicy bool = false

@description('Hash layers with the native addon when the deployed package has one (CCPIPE_VERITY_NATIVE).')
param verityNative bool = true

@description('URI of an existing, activated Managed HSM to hold application keys instead of the vault; empty: the vault.')
param managedHsmUri string = ''

@description('Registries besides the new ACR that ccpipe may contact, comma-separated host[:port] (webhook sources).')
param extraAllowedRegistries string = ''

@allowed(['Standard', 'Premium'])
@description('Azure Container Registry SKU.')
param registrySku string = 'Standard'

@allowed(['Standard', 'Premium'])
@description('Service Bus SKU; Standard is the smallest with topics and duplicate detection.')
param serviceBusSku string = 'Standard'

@minValue(1)
@maxValue(1000)
@description('Flex Consumption: most instances the app scales out to.')
param maximumInstanceCount int = 40

@description('Create the Event Grid subscription from ACR to ingest-eventgrid; needs the code deployed first (second provision).')
param eventSubscriptionEnabled bool = false

@minLength(1)
@maxLength(50)
@description('Cluster this app deploys to (CCPIPE_CLUSTER_NAME, a DNS label): its subscription on the deployments topic.')
param clusterName string = 'primary'

@description('More clusters, comma-separated: each gets a subscription on the deployments topic (its deployer runs elsewhere).')
param additionalClusterNames string = ''

@description('Create an AKS cluster (Entra ID, Azure RBAC for Kubernetes, OIDC issuer, workload identity).')
param deployAks bool = false

@allowed(['vn2', 'addon', 'none'])
@description('Virtual nodes: vn2 prepares the network for the Helm-installed virtual nodes v2 (confidential pods); addon enables the legacy add-on (no confidential pods).')
param virtualNodes string = 'vn2'

@description('VM size of the AKS system pool (virtual nodes v2 needs at least 4 vCPUs and 16 GiB).')
param aksNodeVmSize string = 'Standard_D4s_v5'

@description('Add a confidential VM (AMD SEV-SNP) user node pool to the AKS cluster.')
param confidentialNodePool bool = false

@description('VM size of the confidential node pool.')
param confidentialNodeVmSize string = 'Standard_DC4as_v5'

@description('Existing cluster (deployAks false): resource id, for the deployer role on its namespace.')
param kubeClusterResourceId string = ''

@description('Existing cluster (deployAks false): API server URL (CCPIPE_KUBE_SERVER_URL).')
param kubeServerUrl string = ''

@description('Existing cluster (deployAks false): base64 PEM of the API server CA (CCPIPE_KUBE_CA_BASE64).')
param kubeCaBase64 string = ''

@description('Object id of an operator (user or group) granted read access for audits and failed queues; empty: none.')
param operatorPrincipalId string = ''

@allowed(['User', 'Group', 'ServicePrincipal'])
@description('Kind of principal operatorPrincipalId is.')
param operatorPrincipalType string = 'User'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

// ccpipe gives up on a message after this many deliveries and parks it in <entity>-failed;
// Service Bus entities dead-letter only after more (see core/service-bus.bicep).
var maxDequeueCount = 5

var names = {
  identity: 'id-ccpipe-${resourceToken}'
  hostStorage: 'sthost${resourceToken}'
  dataStorage: 'stdata${resourceToken}'
  plan: 'plan-ccpipe-${resourceToken}'
  functionApp: 'func-ccpipe-${resourceToken}'
  logAnalytics: 'log-ccpipe-${resourceToken}'
  appInsights: 'appi-ccpipe-${resourceToken}'
  serviceBus: 'sb-ccpipe-${resourceToken}'
  keyVault: 'kv-ccpipe-${resourceToken}'
  registry: 'crccpipe${resourceToken}'
  aks: 'aks-ccpipe-${resourceToken}'
}

// Container names the code uses (shared/pipeline/services.ts); the deployment package lives in
// the host account, apart from ccpipe's data.
var runsContainer = 'ccpipe-runs'
var ledgerContainer = 'ccpipe-ledger'
var packageContainer = 'app-package'

var clusterNames = union([clusterName], map(filter(split(additionalClusterNames, ','), n => !empty(trim(n))), n => trim(n)))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'core/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module monitoring 'core/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: names.logAnalytics
    appInsightsName: names.appInsights
    location: location
    tags: tags
  }
}

module hostStorage 'core/storage.bicep' = {
  name: 'host-storage'
  scope: rg
  params: {
    name: names.hostStorage
    location: location
    tags: tags
    containers: [packageContainer]
  }
}

module dataStorage 'core/storage.bicep' = {
  name: 'data-storage'
  scope: rg
  params: {
    name: names.dataStorage
    location: location
    tags: tags
    containers: [runsContainer, ledgerContainer]
    deleteRetentionDays: 30
  }
}

module serviceBus 'core/service-bus.bicep' = {
  name: 'service-bus'
  scope: rg
  params: {
    name: names.serviceBus
    location: location
    tags: tags
    sku: serviceBusSku
    clusterNames: clusterNames
  }
}

module keyVault 'core/key-vault.bicep' = {
  name: 'key-vault'
  scope: rg
  params: {
    name: names.keyVault
    location: location
    tags: tags
    webhookSecret: webhookSecret
  }
}

module registry 'core/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    name: names.registry
    location: location
    tags: tags
    sku: registrySku
  }
}

module aks 'core/aks.bicep' = if (deployAks) {
  name: 'aks'
  scope: rg
  params: {
    name: names.aks
    location: location
    tags: tags
    virtualNodes: virtualNodes
    nodeVmSize: aksNodeVmSize
    confidentialNodePool: confidentialNodePool
    confidentialNodeVmSize: confidentialNodeVmSize
    registryName: registry.outputs.name
  }
}

var appSettings = {
  // Functions host storage, identity-based (Flex Consumption reads it with the UAMI).
  AzureWebJobsStorage__accountName: hostStorage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  // The connection string only locates the resource; ingestion needs an Entra token (local
  // auth is disabled on the component).
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  // The host refuses bigger HTTP bodies before any function reads them (its default is about
  // 100 MB); events are limited to 1 MiB by ccpipe itself (MAX_EVENT_BODY_BYTES).
  FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: '1048576'
  // ManagedIdentityCredential / DefaultAzureCredential pick the UAMI by this client id.
  AZURE_CLIENT_ID: identity.outputs.clientId
  // Service Bus trigger connection (prefix CCPIPE_SERVICE_BUS) and the SDK sender's namespace.
  CCPIPE_SERVICE_BUS__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  CCPIPE_SERVICE_BUS__credential: 'managedidentity'
  CCPIPE_SERVICE_BUS__clientId: identity.outputs.clientId
  CCPIPE_SERVICE_BUS_NAMESPACE: serviceBus.outputs.fullyQualifiedNamespace
  // Runs, ledger, policies and locks: blobs in the data account, identity-based.
  CCPIPE_STORAGE_BLOB_URL: dataStorage.outputs.blobEndpoint
  // Resolved by the platform with the UAMI (keyVaultReferenceIdentity); never a literal.
  CCPIPE_WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.webhookSecretUri})'
  CCPIPE_REGISTRY_ALLOWLIST: empty(extraAllowedRegistries) ? registry.outputs.loginServer : '${registry.outputs.loginServer},${extraAllowedRegistries}'
  // Plain HTTP is for loopback registries of the local stack only.
  CCPIPE_PLAIN_HTTP_REGISTRIES: ''
  CCPIPE_TARGET: 'aci'
  CCPIPE_OUTPUT_SUFFIX: outputSuffix
  CCPIPE_CONFIG_VERSION: configVersion
  CCPIPE_MAA_ENDPOINT: maaEndpoint
  CCPIPE_NAMESPACE: kubernetesNamespace
  CCPIPE_MAX_DEQUEUE_COUNT: string(maxDequeueCount)
  CCPIPE_LAYER_CONCURRENCY: string(layerConcurrency)
  CCPIPE_KEEP_MEASUREMENTS: string(keepMeasurements)
  CCPIPE_SKR_SIDECAR_IMAGE: skrSidecarImage
  CCPIPE_CLOUDEVENTS_ORIGINS: cloudEventsOrigins
  CCPIPE_LOG_LEVEL: logLevel
  CCPIPE_KEY_VAULT_URL: empty(managedHsmUri) ? keyVault.outputs.uri : managedHsmUri
  CCPIPE_KEY_VAULT_IMMUTABLE_POLICY: string(keyVaultImmutablePolicy)
  CCPIPE_VERITY_NATIVE: string(verityNative)
  CCPIPE_CLUSTER_NAME: clusterName
  CCPIPE_KUBE_SERVER_URL: deployAks ? aks!.outputs.serverUrl : kubeServerUrl
  CCPIPE_KUBE_CA_BASE64: deployAks ? aks!.outputs.caBase64 : kubeCaBase64
  // Nothing durable is written locally in Azure; any local fallback goes to the writable /tmp.
  CCPIPE_DATA_DIR: '/tmp/ccpipe'
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: tags
    identityId: identity.outputs.id
    hostStorageName: hostStorage.outputs.name
    packageContainer: packageContainer
    maximumInstanceCount: maximumInstanceCount
    appSettings: appSettings
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    registryName: registry.outputs.name
    serviceBusName: serviceBus.outputs.name
    hostStorageName: hostStorage.outputs.name
    dataStorageName: dataStorage.outputs.name
    keyVaultName: keyVault.outputs.name
    webhookSecretName: keyVault.outputs.webhookSecretName
    appInsightsName: monitoring.outputs.appInsightsName
    keysInVault: empty(managedHsmUri)
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module aksAccess 'app/aks-access.bicep' = if (deployAks) {
  name: 'aks-access'
  scope: rg
  params: {
    clusterName: names.aks
    namespace: kubernetesNamespace
    principalId: identity.outputs.principalId
  }
  dependsOn: [aks]
}

module externalAksAccess 'app/aks-access.bicep' = if (!deployAks && !empty(kubeClusterResourceId)) {
  name: 'external-aks-access'
  scope: resourceGroup(split(kubeClusterResourceId, '/')[2], split(kubeClusterResourceId, '/')[4])
  params: {
    clusterName: last(split(kubeClusterResourceId, '/'))
    namespace: kubernetesNamespace
    principalId: identity.outputs.principalId
  }
}

module acrEvents 'app/acr-events.bicep' = if (eventSubscriptionEnabled) {
  name: 'acr-events'
  scope: rg
  params: {
    systemTopicName: registry.outputs.systemTopicName
    functionAppName: functionApp.outputs.name
    functionName: 'ingest-eventgrid'
    outputSuffix: outputSuffix
  }
}

// Read by azd into the environment (azd env get-value NAME) and by the hooks.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output CCPIPE_WEBHOOK_URL string = '${functionApp.outputs.uri}/api/registry-events'
output AZURE_CONTAINER_REGISTRY_NAME string = registry.outputs.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri
output AZURE_SERVICE_BUS_NAMESPACE string = serviceBus.outputs.name
output AZURE_STORAGE_BLOB_URL string = dataStorage.outputs.blobEndpoint
output AZURE_AKS_CLUSTER_NAME string = deployAks ? names.aks : ''
