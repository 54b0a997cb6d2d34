// The deployer's access to its AKS cluster: Azure RBAC for Kubernetes "Writer" on ccpipe's
// namespace only (Deployments, Services, ConfigMaps, ... there; nothing cluster-wide). The app
// calls the API server with an Entra token for the AKS server application; no kubeconfig, no
// Cluster User role (see rbac.bicep).
//
// NOTE: the role is namespaced, so the deployer cannot create or patch the Namespace object
// itself: the namespace is created once by an operator (docs/deployment.md), and the deployer
// must not apply a Namespace object there.
import { roles } from 'roles.bicep'

@description('Name of the AKS cluster (in this deployment\'s resource group).')
param clusterName string

@description('Kubernetes namespace the deployer writes to.')
param namespace string

@description('Principal (object) id of the user-assigned identity.')
param principalId string

resource cluster 'Microsoft.ContainerService/managedClusters@2025-10-01' existing = {
  name: clusterName
}

// NOTE: a Kubernetes namespace is no ARM resource; this reference only forms the scope
// <cluster id>/namespaces/<namespace>, which Azure RBAC for Kubernetes accepts for namespaced
// role assignments (as `az role assignment create --scope` does). Unverified offline.
#disable-next-line BCP081
resource targetNamespace 'Microsoft.ContainerService/managedClusters/namespaces@2025-10-01' existing = {
  parent: cluster
  name: namespace
}

// RBAC Writer on the namespace: server-side apply of the rendered objects, rollout watch and
// rollback of the Deployment.
resource namespaceWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cluster.id, namespace, principalId, roles.aksRbacWriter)
  scope: targetNamespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.aksRbacWriter)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
