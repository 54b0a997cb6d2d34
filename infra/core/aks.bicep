// Optional AKS cluster for ccpipe's deployments (main.bicep deployAks): Entra ID integration with
// Azure RBAC for Kubernetes and local accounts disabled (every caller, ccpipe included, uses an
// Entra token), OIDC issuer and workload identity on, Azure CNI on a VNet that has the subnet
// virtual nodes need, an optional confidential VM node pool, and AcrPull for the kubelet. The
// control plane runs as its own user-assigned identity, allowed to join the node subnet only.
//
// What Bicep can and cannot set for confidential pods on virtual nodes:
// - can: the network (Azure CNI "node subnet" plugin; subnet `cg` delegated to
//   Microsoft.ContainerInstance/containerGroups), the cluster, the legacy virtual nodes add-on
//   (aciConnectorLinux, virtualNodes = 'addon'), the confidential VM node pool.
// - cannot: virtual nodes v2 ("VN2", microsoft/virtualnodesOnAzureContainerInstances), the only
//   virtual nodes that run confidential ACI pods (pod annotation
//   microsoft.containerinstance.virtualnode.ccepolicy). It is a Helm chart installed into the
//   cluster after provisioning, and the legacy add-on must stay off for it.
// TODO: VN2 also needs the cluster's kubelet identity to manage container groups in the node
//   resource group and join the `cg` subnet (Contributor there, or VN2's documented custom role).
//   That grant is outside ccpipe's least-privilege set, so docs/deployment.md gives it as an
//   operator step together with the Helm install.
// NOTE: the confidential VM pool (AMD SEV-SNP, e.g. Standard_DC4as_v5) protects the whole node:
//   it has no per-pod policy or measurement, so ccpipe's `aci` target does not use it yet.
import { roles } from '../app/roles.bicep'

@description('Name of the cluster.')
param name string

@description('Azure region.')
param location string

@description('Tags for the resources.')
param tags object

@allowed(['vn2', 'addon', 'none'])
@description('vn2: network ready for the Helm-installed virtual nodes v2; addon: legacy add-on; none.')
param virtualNodes string = 'vn2'

@description('VM size of the system pool (virtual nodes v2 needs at least 4 vCPUs and 16 GiB).')
param nodeVmSize string = 'Standard_D4s_v5'

@minValue(1)
@maxValue(10)
@description('Nodes in the system pool.')
param nodeCount int = 2

@description('Add a confidential VM user node pool.')
param confidentialNodePool bool = false

@description('VM size of the confidential node pool (AMD SEV-SNP DCasv5 family).')
param confidentialNodeVmSize string = 'Standard_DC4as_v5'

@description('Name of the container registry the kubelet pulls from.')
param registryName string

// Address plan from the virtual nodes v2 setup: 10.0.0.0/24 stays unused, nodes in `aks`,
// container groups in the delegated `cg`; the service CIDR lies outside the VNet.
var vnetPrefixes = ['10.0.0.0/16', '10.1.0.0/16', '10.2.0.0/16']
var serviceCidr = '10.100.0.0/16'
var dnsServiceIP = '10.100.0.10'

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: '${name}-vnet'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: vnetPrefixes
    }
    subnets: [
      {
        name: 'default'
        properties: {
          addressPrefix: '10.0.0.0/24'
        }
      }
      {
        name: 'aks'
        properties: {
          addressPrefix: '10.1.0.0/16'
        }
      }
      {
        name: 'cg'
        properties: {
          addressPrefix: '10.2.0.0/16'
          delegations: [
            {
              name: 'aci'
              properties: {
                serviceName: 'Microsoft.ContainerInstance/containerGroups'
              }
            }
          ]
        }
      }
    ]
  }
}

resource controlPlane 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${name}-control-plane'
  location: location
  tags: tags
}

resource nodeSubnet 'Microsoft.Network/virtualNetworks/subnets@2024-05-01' existing = {
  parent: vnet
  name: 'aks'
}

// Network Contributor on the node subnet: AKS joins its nodes (and, with Azure CNI, their pods)
// to this bring-your-own subnet; it must hold the role before the cluster is created.
resource subnetJoin 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(nodeSubnet.id, controlPlane.id, roles.networkContributor)
  scope: nodeSubnet
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.networkContributor)
    principalId: controlPlane.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource cluster 'Microsoft.ContainerService/managedClusters@2025-10-01' = {
  name: name
  location: location
  tags: tags
  // Free tier: no uptime SLA; choose Standard for production clusters.
  sku: {
    name: 'Base'
    tier: 'Free'
  }
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${controlPlane.id}': {}
    }
  }
  dependsOn: [subnetJoin]
  properties: {
    dnsPrefix: name
    enableRBAC: true
    disableLocalAccounts: true
    aadProfile: {
      managed: true
      enableAzureRBAC: true
      tenantID: tenant().tenantId
    }
    oidcIssuerProfile: {
      enabled: true
    }
    securityProfile: {
      workloadIdentity: {
        enabled: true
      }
    }
    networkProfile: {
      networkPlugin: 'azure'
      serviceCidr: serviceCidr
      dnsServiceIP: dnsServiceIP
    }
    agentPoolProfiles: [
      {
        name: 'system'
        mode: 'System'
        count: nodeCount
        vmSize: nodeVmSize
        osType: 'Linux'
        osSKU: 'AzureLinux'
        vnetSubnetID: nodeSubnet.id
      }
    ]
    addonProfiles: {
      aciConnectorLinux: {
        enabled: virtualNodes == 'addon'
        config: virtualNodes == 'addon' ? { SubnetName: 'cg' } : null
      }
    }
  }
}

resource confidentialPool 'Microsoft.ContainerService/managedClusters/agentPools@2025-10-01' = if (confidentialNodePool) {
  parent: cluster
  name: 'cvm'
  properties: {
    mode: 'User'
    count: 1
    vmSize: confidentialNodeVmSize
    osType: 'Linux'
    osSKU: 'Ubuntu'
    vnetSubnetID: nodeSubnet.id
    nodeLabels: {
      'ccpipe.dev/tee': 'sevsnp-cvm'
    }
  }
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

// AcrPull for the kubelet identity: nodes pull the converted images ccpipe deploys (by digest).
resource kubeletAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, cluster.id, roles.acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
    principalId: cluster.properties.identityProfile.kubeletidentity.objectId
    principalType: 'ServicePrincipal'
  }
}

// NOTE: AKS exposes its CA only inside kubeconfigs. The user kubeconfig of a cluster with Entra
// ID and local accounts disabled holds no credential, only the server and
// certificate-authority-data, which is already the base64 PEM CCPIPE_KUBE_CA_BASE64 wants.
var userKubeconfig = base64ToString(cluster.listClusterUserCredential().kubeconfigs[0].value)

output name string = cluster.name
output id string = cluster.id
output serverUrl string = 'https://${cluster.properties.fqdn}:443'
// The CA certificate is public; the linter flags every list*() result.
#disable-next-line outputs-should-not-contain-secrets
output caBase64 string = trim(split(split(userKubeconfig, 'certificate-authority-data: ')[1], '\n')[0])
output oidcIssuerUrl string = cluster.properties.oidcIssuerProfile.issuerURL
