// Event Grid subscription: the registry's ImagePushed events go to the ingest-eventgrid function.
// Event Grid checks that the function exists, so this deploys on a second `azd provision`, after
// `azd deploy` (main.bicep eventSubscriptionEnabled; the postdeploy hook says when).

@description('Name of the registry\'s Event Grid system topic.')
param systemTopicName string

@description('Name of the Function App.')
param functionAppName string

@description('Name of the Event Grid-triggered function.')
param functionName string = 'ingest-eventgrid'

@description('Suffix of ccpipe\'s output repositories (CCPIPE_OUTPUT_SUFFIX).')
param outputSuffix string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource imagePushed 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: 'ccpipe-image-pushed'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${site.id}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.ContainerRegistry.ImagePushed']
      // ccpipe's own pushes, <repository><suffix> (converted) and <repository><suffix>/encrypted,
      // would otherwise start runs of their own. Advanced filters are ANDed.
      advancedFilters: [
        {
          operatorType: 'StringNotEndsWith'
          key: 'data.target.repository'
          values: [outputSuffix]
        }
        {
          operatorType: 'StringNotContains'
          key: 'data.target.repository'
          values: ['${outputSuffix}/']
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output name string = imagePushed.name
