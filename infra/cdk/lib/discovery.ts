// Discovery: DiscoverySchedulerFunction (schedule) or ConnectionsApiFunction (sync now)
// -> DiscoveryStateMachine (Map over scopes) -> DiscoveryCrawlerFunction (pages, looped)
// -> InventoryTable; DiscoverySummaryFunction -> DiscoveryRunsTopic and the default bus.
// CloudTrail events -> DiscoveryEventsFunction -> InventoryTable.
import { CfnOutput, Fn, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { dlqAlarm, maestroMetricAlarm, sumOfProblemsAlarm } from './alarms';
import { MaestroFunction } from './maestro-function';
import { maestroStateMachine } from './maestro-state-machine';
import { Notifications } from './notifications';
import { Parameters } from './parameters';
import {
  DEFAULT_EVENT_BUS,
  allow,
  describeOwnAccount,
  lambdaInvoke,
  reachMemberAccounts,
  recordActions,
  snsPublishMessage,
  stepFunctionsExecution,
  useNotificationsKey,
} from './policies';
import { EVENT_RETRY_POLICY, TICK_RETRY_POLICY, deadLetterQueue, logGroup, undeliveredEventsPolicy } from './stores';
import { index, table } from './tables';

const LISTING_ATTRIBUTES = ['summary', 'entityType', 'active', 'nameLower', 'tagKeys', 'firstSeen', 'lastChanged'];

/** The inventory, its history and the discovery connections (docs/inventory.md). */
/** The calls DiscoveryEventsFunction refreshes on, per service: maestro_domain::inventory::events::REFRESH_EVENTS. */
const RESOURCE_CHANGES: [string, string, (string | { prefix: string })[]][] = [
  ['Ec2Changes', 'aws.ec2', ['CreateTags', 'DeleteTags', 'RunInstances', 'StartInstances', 'StopInstances', 'TerminateInstances', 'ModifyInstanceAttribute', 'ModifyInstancePlacement', 'ModifyInstanceMetadataOptions', 'AssociateAddress', 'DisassociateAddress', 'AssociateIamInstanceProfile', 'AttachVolume', 'DetachVolume', 'CreateVolume', 'DeleteVolume', 'ModifyVolume', 'CreateSnapshot', 'CreateSnapshots', 'CopySnapshot', 'DeleteSnapshot', 'ModifySnapshotAttribute', 'ModifySnapshotTier', 'CreateImage', 'RegisterImage', 'CopyImage', 'DeregisterImage', 'ModifyImageAttribute', 'EnableImage', 'DisableImage', 'EnableImageDeprecation', 'DisableImageDeprecation', 'CreateSecurityGroup', 'DeleteSecurityGroup', 'AuthorizeSecurityGroupIngress', 'AuthorizeSecurityGroupEgress', 'RevokeSecurityGroupIngress', 'RevokeSecurityGroupEgress', 'ModifySecurityGroupRules', 'UpdateSecurityGroupRuleDescriptionsIngress', 'UpdateSecurityGroupRuleDescriptionsEgress', 'CreateVpc', 'DeleteVpc', 'ModifyVpcAttribute', 'AssociateVpcCidrBlock', 'DisassociateVpcCidrBlock', 'CreateSubnet', 'DeleteSubnet', 'ModifySubnetAttribute', 'CreateRouteTable', 'DeleteRouteTable', 'CreateRoute', 'ReplaceRoute', 'DeleteRoute', 'AssociateRouteTable', 'DisassociateRouteTable', 'ReplaceRouteTableAssociation', 'CreateNatGateway', 'DeleteNatGateway', 'CreateNetworkAcl', 'DeleteNetworkAcl', 'CreateNetworkAclEntry', 'ReplaceNetworkAclEntry', 'DeleteNetworkAclEntry', 'ReplaceNetworkAclAssociation', 'CreateVpcEndpoint', 'ModifyVpcEndpoint', 'DeleteVpcEndpoints', 'CreateVpcPeeringConnection', 'AcceptVpcPeeringConnection', 'RejectVpcPeeringConnection', 'DeleteVpcPeeringConnection', 'CreateVpnGateway', 'AttachVpnGateway', 'DetachVpnGateway', 'DeleteVpnGateway']],
  ['S3Changes', 'aws.s3', ['CreateBucket', 'DeleteBucket', 'PutBucketTagging', 'DeleteBucketTagging']],
  ['RdsChanges', 'aws.rds', ['CreateDBInstance', 'CreateDBInstanceReadReplica', 'RestoreDBInstanceFromDBSnapshot', 'RestoreDBInstanceToPointInTime', 'DeleteDBInstance', 'ModifyDBInstance', 'StartDBInstance', 'StopDBInstance', 'RebootDBInstance', 'PromoteReadReplica', 'AddTagsToResource', 'RemoveTagsFromResource']],
  ['LoadBalancerChanges', 'aws.elasticloadbalancing', ['CreateLoadBalancer', 'DeleteLoadBalancer', 'ModifyLoadBalancerAttributes', 'SetSecurityGroups', 'SetSubnets', 'SetIpAddressType', 'ApplySecurityGroupsToLoadBalancer', 'AttachLoadBalancerToSubnets', 'DetachLoadBalancerFromSubnets', 'RegisterInstancesWithLoadBalancer', 'DeregisterInstancesFromLoadBalancer', 'RegisterTargets', 'DeregisterTargets', 'AddTags', 'RemoveTags']],
  ['LambdaChanges', 'aws.lambda', [{ prefix: 'CreateFunction' }, { prefix: 'DeleteFunction' }, { prefix: 'UpdateFunctionCode' }, { prefix: 'UpdateFunctionConfiguration' }, { prefix: 'TagResource' }, { prefix: 'UntagResource' }]],
  ['CloudFrontChanges', 'aws.cloudfront', [{ prefix: 'CreateDistribution' }, { prefix: 'CreateDistributionWithTags' }, { prefix: 'UpdateDistribution' }, { prefix: 'DeleteDistribution' }, { prefix: 'TagResource' }, { prefix: 'UntagResource' }]],
];

export function inventoryTable(stack: Stack): dynamodb.CfnTable {
  const inventory = table(stack, 'InventoryTable', {
    attributes: ['PK', 'SK', 'id', 'scopeKey', 'family', 'account', 'region', 'environment'],
    partitionKey: 'PK',
    sortKey: 'SK',
    globalSecondaryIndexes: [
      // The manifest of a scope: only active entities carry scopeKey.
      index('byScope', 'scopeKey', 'id', ['hash', 'misses']),
      index('byFamily', 'family', 'id', LISTING_ATTRIBUTES),
      index('byAccount', 'account', 'id', LISTING_ATTRIBUTES),
      index('byRegion', 'region', 'id', LISTING_ATTRIBUTES),
      index('byEnvironment', 'environment', 'id', LISTING_ATTRIBUTES),
    ],
    pointInTimeRecovery: true,
  });
  // Deleting or replacing the stack must not take the records (or the key to them) with it.
  inventory.applyRemovalPolicy(RemovalPolicy.RETAIN);
  return inventory;
}

export interface DiscoveryProps {
  readonly parameters: Parameters;
  readonly notifications: Notifications;
  readonly api: apigwv2.HttpApi;
  readonly inventoryTable: dynamodb.CfnTable;
  readonly scheduledRunsDlq: sqs.IQueue;
  readonly approvalsTable: dynamodb.CfnTable;
  readonly approvalStateMachine: sfn.IStateMachine;
}

export function addDiscovery(stack: Stack, props: DiscoveryProps): void {
  const { parameters, notifications } = props;
  const inventory = props.inventoryTable;
  const alertsTopicArn = notifications.alertsTopic.ref;
  const memberRoles = Fn.sub('arn:${AWS::Partition}:iam::*:role/${MemberRoleName}*');

  const runsTopic = notifications.topic(stack, 'DiscoveryRunsTopic', 'Maestro discovery runs');

  const crawler = new MaestroFunction(stack, 'DiscoveryCrawlerFunction', {
    crate: 'discovery-crawler',
    description:
      'Crawls a bounded number of pages of one scope (connection x region x resource type), writing only what changed, and concludes the scope after its last page.',
    // 100,000 entities translated and diffed fit in well under this (README benchmark).
    memorySize: 512,
    timeoutSeconds: 300,
    environment: {
      INVENTORY_TABLE: inventory.ref,
      PAGES_PER_CALL: parameters.discoveryPagesPerCall,
      GONE_AFTER_CRAWLS: parameters.discoveryGoneAfterCrawls,
      ENVIRONMENT_TAG_KEYS: parameters.discoveryEnvironmentTagKeys,
      ROLE_TAG_KEYS: parameters.discoveryRoleTagKeys,
    },
    statements: [
      allow(
        [
          'dynamodb:GetItem',
          'dynamodb:BatchGetItem',
          'dynamodb:PutItem',
          'dynamodb:UpdateItem',
          'dynamodb:DeleteItem',
          'dynamodb:BatchWriteItem',
          'dynamodb:Query',
        ],
        [inventory.attrArn, `${inventory.attrArn}/index/byScope`],
        { sid: 'Inventory' },
      ),
      reachMemberAccounts(memberRoles),
      describeOwnAccount([
        'cloudfront:ListDistributions',
        'cloudfront:ListTagsForResource',
        'lambda:ListFunctions',
        'lambda:ListTags',
        // Whether a region that refuses the crawl is one the account has not enabled.
        'ec2:DescribeRegions',
      ]),
    ],
  });

  const summary = new MaestroFunction(stack, 'DiscoverySummaryFunction', {
    crate: 'discovery-summary',
    description:
      "Records each scope's last crawl, counts the scopes that keep failing, and publishes one summary per discovery run (counts per scope, failed scopes with their reason).",
    environment: {
      EVENT_BUS_NAME: 'default',
      DISCOVERY_TOPIC_ARN: runsTopic.ref,
      INVENTORY_TABLE: inventory.ref,
    },
    statements: [
      allow(['events:PutEvents'], [DEFAULT_EVENT_BUS], { sid: 'Summary' }),
      // Each scope's last crawl, kept on its connection's schedule item; and the leases of
      // the scopes that failed, freed once their run has ended.
      allow(['dynamodb:GetItem', 'dynamodb:UpdateItem'], [inventory.attrArn], {
        sid: 'RecordScopeCrawls',
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['CONNECTIONS', 'LEASE#*'] } },
      }),
      useNotificationsKey(notifications.notificationsKey.attrArn),
      snsPublishMessage(runsTopic.ref),
    ],
  });

  const discovery = maestroStateMachine(stack, 'DiscoveryStateMachine', {
    definitionFile: 'discovery.asl.json',
    substitutions: {
      DiscoveryCrawlerFunctionArn: crawler.fn.functionArn,
      DiscoverySummaryFunctionArn: summary.fn.functionArn,
    },
    logGroup: logGroup(stack, 'DiscoveryLogGroup'),
    statements: [lambdaInvoke(crawler.fn), lambdaInvoke(summary.fn)],
  });

  // A failed scope is reported in the run's summary and concludes nothing; what needs an
  // operator is a run that failed or timed out as a whole.
  sumOfProblemsAlarm(
    stack,
    'DiscoveryRunsFailedAlarm',
    'A discovery run failed or timed out as a whole (its summary was not published).',
    [
      {
        id: 'failed',
        namespace: 'AWS/States',
        metricName: 'ExecutionsFailed',
        dimension: { name: 'StateMachineArn', value: discovery.stateMachineArn },
      },
      {
        id: 'timedout',
        namespace: 'AWS/States',
        metricName: 'ExecutionsTimedOut',
        dimension: { name: 'StateMachineArn', value: discovery.stateMachineArn },
      },
    ],
    'Failed or timed-out discovery runs',
    alertsTopicArn,
  );

  // One failed crawl is often passing; three in a row are not. Hourly, so that a scope
  // crawled every 15 minutes alarms once, not four times.
  maestroMetricAlarm(
    stack,
    'DiscoveryScopesFailingAlarm',
    "A discovery scope failed its last 3 crawls or more, so its inventory is stale; GET /connections/{id} shows each scope's last crawl and its error.",
    'FailingScopes',
    alertsTopicArn,
  );

  const scheduler = new MaestroFunction(stack, 'DiscoverySchedulerFunction', {
    crate: 'discovery-scheduler',
    description:
      'Starts discovery runs over the scopes whose interval has passed, within DiscoveryMaxCrawlers, and retires the entities of scopes no connection crawls any more; in organisation mode first keeps a connection per ACTIVE account.',
    timeoutSeconds: 120,
    // A tick that fails every retry is kept for an operator; the next tick runs anyway.
    deadLetterQueue: props.scheduledRunsDlq,
    environment: {
      INVENTORY_TABLE: inventory.ref,
      DISCOVERY_STATE_MACHINE_ARN: discovery.stateMachineArn,
      DISCOVERY_MAX_CONCURRENCY: parameters.discoveryMaxConcurrency,
      DISCOVERY_MAX_CRAWLERS: parameters.discoveryMaxCrawlers,
      ORGANIZATION_MODE: parameters.organizationMode,
      MEMBER_ROLE_NAME: parameters.memberRoleName,
      MEMBER_EXTERNAL_ID: parameters.memberExternalId,
      ORGANIZATION_REGIONS: parameters.organizationRegions,
      OWN_ACCOUNT_ID: stack.account,
    },
    statements: [
      // The connections and their schedules; and the entities of scopes no connection crawls
      // any more, which it retires (maestro_domain::inventory::lifecycle).
      allow(
        [
          'dynamodb:GetItem',
          'dynamodb:BatchGetItem',
          'dynamodb:PutItem',
          'dynamodb:UpdateItem',
          'dynamodb:DeleteItem',
          'dynamodb:BatchWriteItem',
          'dynamodb:Query',
        ],
        [inventory.attrArn, `${inventory.attrArn}/index/byScope`],
        { sid: 'ConnectionsAndSchedule' },
      ),
      allow(['organizations:ListAccounts'], ['*'], { sid: 'OrganisationAccounts' }),
      // The runs going now, counted against DiscoveryMaxCrawlers.
      allow(['states:ListExecutions'], [discovery.stateMachineArn], { sid: 'RunsGoing' }),
      stepFunctionsExecution(discovery),
    ],
  });
  scheduler.onSchedule('Tick', parameters.discoverySchedule, {
    deadLetterQueue: props.scheduledRunsDlq,
    retryPolicy: TICK_RETRY_POLICY,
  });

  const eventsDlq = deadLetterQueue(stack, 'DiscoveryEventsDLQ');
  undeliveredEventsPolicy(stack, 'DiscoveryEventsDLQPolicy', eventsDlq, 'UndeliveredResourceEvents');
  dlqAlarm(
    stack,
    'DiscoveryEventsDLQAlarm',
    eventsDlq,
    'Resource change events could not be refreshed and are in the DLQ; the next scheduled crawl covers them.',
    alertsTopicArn,
  );
  const events = new MaestroFunction(stack, 'DiscoveryEventsFunction', {
    crate: 'discovery-events',
    description: 'Describes again the resources a CloudTrail event names and writes what changed.',
    timeoutSeconds: 60,
    deadLetterQueue: eventsDlq,
    environment: {
      INVENTORY_TABLE: inventory.ref,
      ENVIRONMENT_TAG_KEYS: parameters.discoveryEnvironmentTagKeys,
      ROLE_TAG_KEYS: parameters.discoveryRoleTagKeys,
    },
    statements: [
      allow(
        [
          'dynamodb:BatchGetItem',
          'dynamodb:PutItem',
          'dynamodb:UpdateItem',
          'dynamodb:DeleteItem',
          'dynamodb:BatchWriteItem',
          'dynamodb:Query',
        ],
        [inventory.attrArn],
        { sid: 'Inventory' },
      ),
      reachMemberAccounts(memberRoles),
      describeOwnAccount([
        'cloudfront:GetDistribution',
        'cloudfront:ListTagsForResource',
        'lambda:GetFunction',
        'lambda:ListTags',
      ]),
    ],
  });
  // One rule per service: an event pattern holds at most 2,048 characters. Member accounts'
  // events reach this bus through infra/member-events-forwarder.yaml; CloudFront events arrive
  // in us-east-1, S3 events in the region of the bucket's endpoint.
  for (const [eventName, source, calls] of RESOURCE_CHANGES) {
    events.onEventBridgeRule(
      eventName,
      { source: [source], 'detail-type': ['AWS API Call via CloudTrail'], detail: { eventName: calls } },
      { deadLetterQueue: eventsDlq, retryPolicy: EVENT_RETRY_POLICY },
    );
  }
  events.onEventBridgeRule(
    'InstanceStateChanges',
    {
      source: ['aws.ec2'],
      'detail-type': ['EC2 Instance State-change Notification'],
      detail: { state: ['running', 'stopped', 'terminated'] },
    },
    { deadLetterQueue: eventsDlq, retryPolicy: EVENT_RETRY_POLICY },
  );

  const connections = new MaestroFunction(stack, 'ConnectionsApiFunction', {
    crate: 'connections-api',
    description:
      'Discovery connections over HTTP (create, list, get, replace, delete through the approval workflow, sync now).',
    environment: {
      INVENTORY_TABLE: inventory.ref,
      DISCOVERY_STATE_MACHINE_ARN: discovery.stateMachineArn,
      DISCOVERY_MAX_CONCURRENCY: parameters.discoveryMaxConcurrency,
      DISCOVERY_MAX_CRAWLERS: parameters.discoveryMaxCrawlers,
      APPROVAL_POLICY: parameters.approvalPolicy,
      TEAMS_CLAIM: parameters.authTeamsClaim,
      OPERATORS_TEAM: parameters.operatorsTeam,
      SECRET_OWNERS: parameters.secretOwners,
      APPROVALS_TABLE: props.approvalsTable.ref,
      APPROVAL_STATE_MACHINE_ARN: props.approvalStateMachine.stateMachineArn,
    },
    statements: [
      allow(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Query'], [inventory.attrArn], {
        sid: 'Connections',
      }),
      recordActions(props.approvalsTable.attrArn),
      // A sync-now counts the runs going against DiscoveryMaxCrawlers too.
      allow(['states:ListExecutions'], [discovery.stateMachineArn], { sid: 'RunsGoing' }),
      stepFunctionsExecution(discovery),
      stepFunctionsExecution(props.approvalStateMachine),
    ],
  });
  connections.onHttp('Create', props.api, apigwv2.HttpMethod.POST, '/connections');
  connections.onHttp('List', props.api, apigwv2.HttpMethod.GET, '/connections');
  connections.onHttp('Get', props.api, apigwv2.HttpMethod.GET, '/connections/{id}');
  connections.onHttp('Replace', props.api, apigwv2.HttpMethod.PUT, '/connections/{id}');
  connections.onHttp('Delete', props.api, apigwv2.HttpMethod.DELETE, '/connections/{id}');
  connections.onHttp('Sync', props.api, apigwv2.HttpMethod.POST, '/connections/{id}/sync');

  const inventoryApi = new MaestroFunction(stack, 'InventoryApiFunction', {
    crate: 'inventory-api',
    description:
      'The inventory over HTTP (filtered listing, one entity with its relations, history, summary, CSV and JSON export).',
    memorySize: 256,
    environment: {
      INVENTORY_TABLE: inventory.ref,
      TEAMS_CLAIM: parameters.authTeamsClaim,
      OPERATORS_TEAM: parameters.operatorsTeam,
    },
    statements: [
      allow(
        ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query', 'dynamodb:Scan'],
        [inventory.attrArn, `${inventory.attrArn}/index/*`],
        { sid: 'ReadInventory' },
      ),
    ],
  });
  inventoryApi.onHttp('List', props.api, apigwv2.HttpMethod.GET, '/inventory');
  inventoryApi.onHttp('Summary', props.api, apigwv2.HttpMethod.GET, '/inventory/summary');
  inventoryApi.onHttp('Export', props.api, apigwv2.HttpMethod.GET, '/inventory/export');
  inventoryApi.onHttp('Entity', props.api, apigwv2.HttpMethod.GET, '/inventory/{id}');
  inventoryApi.onHttp('History', props.api, apigwv2.HttpMethod.GET, '/inventory/{id}/history');

  new CfnOutput(stack, 'InventoryTableName', {
    description: 'The inventory, its history and the discovery connections (docs/inventory.md).',
    value: inventory.ref,
  });
  new CfnOutput(stack, 'DiscoveryStateMachineArn', {
    description: 'Runs discovery over a list of scopes.',
    value: discovery.stateMachineArn,
  });
  new CfnOutput(stack, 'DiscoveryRunsTopicArn', { description: 'One summary per discovery run.', value: runsTopic.ref });
}
