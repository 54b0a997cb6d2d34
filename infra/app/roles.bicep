// Built-in Azure role definition ids ccpipe assigns, in one place. Every role assignment in infra/
// names one of these; test/infra checks them against its own copy and an allowlist. Owner,
// Contributor, User Access Administrator and Key Vault Administrator are never assigned.

@export()
@description('Built-in role definition ids (the GUID, not the full resource id).')
var roles = {
  // ACR: push converted and encrypted images; includes pull of the source image.
  acrPush: '8311e382-0749-4cb8-b61a-304f252e45ec'
  // ACR: pull only (the AKS kubelet, which runs the converted images).
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  // Service Bus data plane: send to queues and topics.
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  // Service Bus data plane: receive (and peek) from queues and subscriptions.
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  // Blob data plane: read, write, delete blobs and containers; leases.
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  // Blob data plane as the Functions host documents it for identity-based host storage.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Blob data plane: read only (operators auditing the ledger).
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  // Key Vault keys: create, rotate, update properties (release policies); no secrets, no RBAC.
  keyVaultCryptoOfficer: '14b46e9e-c2b7-41b4-b07b-48a6ebf60603'
  // Key Vault secrets: read secret contents (the webhook secret reference).
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  // Application Insights ingestion with Entra ID authentication.
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  // Join the AKS node subnet (the AKS control plane's identity, on that subnet only).
  networkContributor: '4d97b98b-1d4f-4787-a291-c67834d212e7'
  // Azure RBAC for Kubernetes: read/write most objects in the namespace it is scoped to.
  aksRbacWriter: 'a7ffa36f-339b-4b5c-8bdf-e2c188b2c0eb'
}
