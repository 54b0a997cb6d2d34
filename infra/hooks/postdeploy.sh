#!/bin/sh
# azd postdeploy: the Event Grid subscription to ingest-eventgrid can only be created once the
# function exists, so it is a second provision after the first deploy.
set -eu
if [ "${CCPIPE_EVENT_SUBSCRIPTION:-false}" != "true" ]; then
  echo ""
  echo "ccpipe: ACR pushes do not reach ccpipe yet. Create the Event Grid subscription with:"
  echo "  azd env set CCPIPE_EVENT_SUBSCRIPTION true"
  echo "  azd provision"
fi
