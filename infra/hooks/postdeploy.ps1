# azd postdeploy (Windows): see postdeploy.sh.
$ErrorActionPreference = 'Stop'
if ($env:CCPIPE_EVENT_SUBSCRIPTION -ne 'true') {
  Write-Host ''
  Write-Host 'ccpipe: ACR pushes do not reach ccpipe yet. Create the Event Grid subscription with:'
  Write-Host '  azd env set CCPIPE_EVENT_SUBSCRIPTION true'
  Write-Host '  azd provision'
}
