# azd postprovision (Windows): see postprovision.sh.
$ErrorActionPreference = 'Stop'
Write-Host ''
Write-Host "ccpipe is provisioned in resource group $env:AZURE_RESOURCE_GROUP."
Write-Host "  registry     $env:AZURE_CONTAINER_REGISTRY_ENDPOINT (pushes start runs via Event Grid)"
Write-Host "  webhook      POST $env:CCPIPE_WEBHOOK_URL"
Write-Host '               header x-ccpipe-webhook-secret: (azd env get-value CCPIPE_WEBHOOK_SECRET)'
Write-Host "  key vault    $env:AZURE_KEY_VAULT_URI"
Write-Host "  service bus  $env:AZURE_SERVICE_BUS_NAMESPACE"
if ($env:AZURE_AKS_CLUSTER_NAME) {
  Write-Host "AKS $($env:AZURE_AKS_CLUSTER_NAME): create the namespace and install virtual nodes v2"
  Write-Host "  (docs/deployment.md, section 'AKS: steps Bicep cannot do')."
}
