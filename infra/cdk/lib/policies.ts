// The statements behind the template's Policies: the SAM policy templates the template still
// uses (StepFunctionsExecutionPolicy, SNSPublishMessagePolicy, LambdaInvokePolicy) spelled out as
// the statements SAM expands them to, and the statements several functions share.
import { Fn, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as sqs from 'aws-cdk-lib/aws-sqs';

export interface StatementOptions {
  readonly sid?: string;
  readonly conditions?: Record<string, Record<string, unknown>>;
}

export function allow(actions: string[], resources: string[], options: StatementOptions = {}): iam.PolicyStatement {
  return new iam.PolicyStatement({ sid: options.sid, actions, resources, conditions: options.conditions });
}

/** `!Sub arn:${AWS::Partition}:SERVICE:${AWS::Region}:${AWS::AccountId}:RESOURCE`, as the template writes it. */
export function stackArn(service: string, resource: string): string {
  return Fn.sub(`arn:\${AWS::Partition}:${service}:\${AWS::Region}:\${AWS::AccountId}:${resource}`);
}

export const DEFAULT_EVENT_BUS = stackArn('events', 'event-bus/default');
export const ANY_SECRET = stackArn('secretsmanager', 'secret:*');

/** A KMS key policy's statement that lets the account administer the key through IAM. */
export function accountAdministersKey(stack: Stack): Record<string, unknown> {
  return {
    Sid: 'AccountAdministers',
    Effect: 'Allow',
    Principal: { AWS: `arn:${stack.partition}:iam::${stack.account}:root` },
    Action: 'kms:*',
    Resource: '*',
  };
}

/** Items of a table whose partition key starts with one of `prefixes` (`ACTION#`, `SSO_RUN#`). */
export function onlyItems(...prefixes: string[]): Record<string, Record<string, unknown>> {
  return { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': prefixes.map((prefix) => `${prefix}*`) } };
}

/**
 * An API function records the actions it submits in ApprovalsTable: their own items only
 * (`ACTION#<id>`), which hold no approval and no task token (shared/aws/src/approvals.rs).
 */
export function recordActions(approvalsTableArn: string): iam.PolicyStatement {
  return allow(['dynamodb:PutItem'], [approvalsTableArn], { sid: 'RecordActions', conditions: onlyItems('ACTION#') });
}

/**
 * Discovery assumes member roles only in accounts of Maestro's own organisation: the role's
 * account's aws:ResourceOrgID must equal the caller's aws:PrincipalOrgID.
 */
export function reachMemberAccounts(memberRolesArn: string): iam.PolicyStatement {
  return allow(['sts:AssumeRole'], [memberRolesArn], {
    sid: 'ReachMemberAccounts',
    conditions: { StringEquals: { 'aws:ResourceOrgID': '${aws:PrincipalOrgID}' } },
  });
}

// SAM policy templates (samtranslator's policy_templates.json).

export function stepFunctionsExecution(stateMachine: sfn.IStateMachine): iam.PolicyStatement {
  return allow(['states:StartExecution'], [stateMachine.stateMachineArn]);
}

export function snsPublishMessage(topicArn: string): iam.PolicyStatement {
  return allow(['sns:Publish'], [topicArn]);
}

/** The trailing `*` covers the function's versions and aliases, as SAM's template does. */
export function lambdaInvoke(fn: lambda.IFunction): iam.PolicyStatement {
  return allow(['lambda:InvokeFunction'], [`${fn.functionArn}*`]);
}

// Statements several functions share.

/** Publishing to a topic encrypted with a customer managed key needs both. */
export function useNotificationsKey(keyArn: string): iam.PolicyStatement {
  return allow(['kms:GenerateDataKey*', 'kms:Decrypt'], [keyArn]);
}

/**
 * How a function takes its share of IAM Identity Center's quotas in MaestroQuotaTable
 * (shared/aws/src/quota.rs): `calls` takes call slots only, one conditional UpdateItem each;
 * `callsAndOperations` also reserves and releases outstanding assignment operations, which
 * reads and conditionally rewrites the one item that holds them.
 */
export type SsoAdminQuotaUse = 'calls' | 'callsAndOperations';

export function shareTheSsoAdminQuota(quotaTableArn: string, use: SsoAdminQuotaUse): iam.PolicyStatement {
  const actions =
    use === 'calls' ? ['dynamodb:UpdateItem'] : ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'];
  return allow(actions, [quotaTableArn], { sid: 'ShareTheSsoAdminQuota' });
}

/**
 * What a function does with SsoPlansTable: records runs (PutItem), reads them back and the
 * snapshot (Query), counts deletes against the window's budget or reads the snapshot's pointer
 * (GetItem), frees the one-run lease (UpdateItem), writes the snapshot (BatchWriteItem).
 */
export function recordRuns(plansTableArn: string, actions: string[]): iam.PolicyStatement {
  return allow(
    actions.map((action) => `dynamodb:${action}`),
    [plansTableArn],
    { sid: 'RecordRuns' },
  );
}

/**
 * A planner sends the changes it planned to SsoChangesQueue in batches; a full run feeds them
 * as fast as the worker drains the queue, and reads its backlog.
 */
export function queueChanges(changesQueue: sqs.IQueue, uses = { readsBacklog: false }): iam.PolicyStatement {
  const actions = ['sqs:SendMessageBatch'];
  if (uses.readsBacklog) actions.push('sqs:GetQueueAttributes');
  return allow(actions, [changesQueue.queueArn], { sid: 'QueueChanges' });
}

/** What a full reconcile reads: the organisation as a tree, then IAM Identity Center; last, what
 * events touched while it ran, read again. */
export function readForFullRun(): iam.PolicyStatement[] {
  return [
    allow(
      [
        'organizations:DescribeOrganization',
        'organizations:ListRoots',
        'organizations:ListOrganizationalUnitsForParent',
        'organizations:ListAccountsForParent',
        'organizations:ListTagsForResource',
        'organizations:DescribeAccount',
        'organizations:ListParents',
        'organizations:DescribeOrganizationalUnit',
      ],
      ['*'],
      { sid: 'ReadTheOrganisation' },
    ),
    allow(
      [
        'sso:ListPermissionSets',
        'sso:DescribePermissionSet',
        'sso:ListTagsForResource',
        'sso:ListAccountsForProvisionedPermissionSet',
        'sso:ListPermissionSetsProvisionedToAccount',
        'sso:ListAccountAssignments',
        'identitystore:ListGroups',
        'identitystore:ListUsers',
      ],
      ['*'],
      { sid: 'ReadIdentityCenter' },
    ),
  ];
}

/**
 * What an event touched, read again: one account (its OU path walked up), one permission set,
 * the tree, or the principals.
 */
export function readWhatAnEventTouched(): iam.PolicyStatement[] {
  return [
    allow(
      [
        'organizations:DescribeAccount',
        'organizations:ListParents',
        'organizations:DescribeOrganizationalUnit',
        'organizations:ListTagsForResource',
        'organizations:ListRoots',
        'organizations:ListOrganizationalUnitsForParent',
        'organizations:ListAccountsForParent',
      ],
      ['*'],
      { sid: 'ReadTheOrganisation' },
    ),
    allow(
      [
        'sso:DescribePermissionSet',
        'sso:ListTagsForResource',
        'sso:ListAccountsForProvisionedPermissionSet',
        'sso:ListPermissionSetsProvisionedToAccount',
        'sso:ListAccountAssignments',
        'identitystore:ListGroups',
        'identitystore:ListUsers',
      ],
      ['*'],
      { sid: 'ReadIdentityCenter' },
    ),
  ];
}

/**
 * The held accounts, read again before their deletes are applied: each account's tags and OU
 * path walked up, and its assignments.
 */
export function readTheHeldAccounts(): iam.PolicyStatement[] {
  return [
    allow(
      [
        'organizations:DescribeAccount',
        'organizations:ListParents',
        'organizations:DescribeOrganizationalUnit',
        'organizations:ListTagsForResource',
      ],
      ['*'],
      { sid: 'ReadTheOrganisation' },
    ),
    allow(
      [
        'sso:ListPermissionSetsProvisionedToAccount',
        'sso:ListAccountAssignments',
        'identitystore:ListGroups',
        'identitystore:ListUsers',
      ],
      ['*'],
      { sid: 'ReadIdentityCenter' },
    ),
  ];
}

/** Describe calls of the crawler and the event refresh in Maestro's own account. */
export function describeOwnAccount(specific: string[]): iam.PolicyStatement {
  return allow(
    [
      'ec2:DescribeInstances',
      'ec2:DescribeVolumes',
      'ec2:DescribeSnapshots',
      'ec2:DescribeImages',
      'ec2:DescribeSecurityGroups',
      'ec2:DescribeVpcs',
      'ec2:DescribeSubnets',
      'ec2:DescribeRouteTables',
      'ec2:DescribeNatGateways',
      'ec2:DescribeNetworkAcls',
      'ec2:DescribeVpcEndpoints',
      'ec2:DescribeVpcPeeringConnections',
      'ec2:DescribeVpnGateways',
      'elasticloadbalancing:DescribeLoadBalancers',
      'elasticloadbalancing:DescribeTags',
      'elasticloadbalancing:DescribeTargetGroups',
      'elasticloadbalancing:DescribeTargetHealth',
      'rds:DescribeDBInstances',
      's3:ListAllMyBuckets',
      's3:GetBucketLocation',
      's3:GetBucketTagging',
      ...specific,
    ],
    ['*'],
    { sid: 'DescribeOwnAccount' },
  );
}
