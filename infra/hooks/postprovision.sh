#!/bin/sh
# azd postprovision: where things are and what an operator still does by hand.
set -eu
echo ""
echo "ccpipe is provisioned in resource group ${AZURE_RESOURCE_GROUP}."
echo "  registry     ${AZURE_CONTAINER_REGISTRY_ENDPOINT} (pushes start runs via Event Grid)"
echo "  webhook      POST ${CCPIPE_WEBHOOK_URL}"
echo "               header x-ccpipe-webhook-secret: \$(azd env get-value CCPIPE_WEBHOOK_SECRET)"
echo "  key vault    ${AZURE_KEY_VAULT_URI}"
echo "  service bus  ${AZURE_SERVICE_BUS_NAMESPACE}"
if [ -n "${AZURE_AKS_CLUSTER_NAME:-}" ]; then
  echo "AKS ${AZURE_AKS_CLUSTER_NAME}: create the namespace and install virtual nodes v2"
  echo "  (docs/deployment.md, section 'AKS: steps Bicep cannot do')."
fi
