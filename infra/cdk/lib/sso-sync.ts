// SSO assignment sync (flows A and B): SsoReconcileFunction begins full runs that
// SsoReconcileStateMachine reads, plans and queues in steps, SsoEventHandlerFunction re-plans
// what an event touched; runs and the snapshot are in SsoPlansTable, changes go on
// SsoChangesQueue -> SsoAssignmentWorkerFunction -> IAM Identity Center ->
// SsoAssignmentRequestsQueue (the monitor, sso-monitor.ts)
import { Fn, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { dlqAlarm, sumOfProblemsAlarm } from './alarms';
import { MaestroFunction } from './maestro-function';
import { maestroStateMachine } from './maestro-state-machine';
import { Parameters } from './parameters';
import {
  allow,
  lambdaInvoke,
  queueChanges,
  readForFullRun,
  readWhatAnEventTouched,
  recordRuns,
  shareTheSsoAdminQuota,
  stepFunctionsExecution,
} from './policies';
import { EVENT_RETRY_POLICY, TICK_RETRY_POLICY, deadLetterQueue, logGroup, undeliveredEventsPolicy, workQueue } from './stores';
import { table } from './tables';

/**
 * The sync's tables and queues, which the monitor and the approvals' action runner use too, and
 * the DLQ of every scheduled function (placed here as in the template).
 */
export class SsoSyncStores {
  readonly plansTable: dynamodb.CfnTable;
  /**
   * IAM Identity Center's quotas shared by every function that calls it: 20 sso-admin calls
   * a second and 15 outstanding assignment operations (shared/aws/src/quota.rs).
   */
  readonly quotaTable: dynamodb.CfnTable;
  /** Event ids already processed, so a redelivered event is processed once. */
  readonly idempotencyTable: dynamodb.CfnTable;
  readonly changesQueue: sqs.Queue;
  readonly eventsDlq: sqs.Queue;
  /** The scheduled functions' failed ticks, and schedules EventBridge could not deliver. */
  readonly scheduledRunsDlq: sqs.Queue;

  constructor(stack: Stack, alertsTopicArn: string) {
    this.plansTable = table(stack, 'SsoPlansTable', {
      attributes: ['pk', 'sk'],
      partitionKey: 'pk',
      sortKey: 'sk',
      pointInTimeRecovery: true,
    });
    // Deleting or replacing the stack must not take the records (or the key to them) with it.
    this.plansTable.applyRemovalPolicy(RemovalPolicy.RETAIN);

    const changesDlq = deadLetterQueue(stack, 'SsoChangesDLQ');
    // Six times the worker's timeout, as Lambda advises for queues it polls.
    this.changesQueue = workQueue(stack, 'SsoChangesQueue', {
      visibilityTimeoutSeconds: 180,
      deadLetterQueue: changesDlq,
      maxReceiveCount: 5,
    });
    dlqAlarm(
      stack,
      'SsoChangesDLQAlarm',
      changesDlq,
      'Planned SSO assignment changes failed repeatedly and are in the DLQ.',
      alertsTopicArn,
    );

    // Counters that live for seconds: a restore would bring back stale reservations.
    this.quotaTable = table(stack, 'MaestroQuotaTable', {
      attributes: ['pk'],
      partitionKey: 'pk',
      pointInTimeRecovery: false,
    });
    this.idempotencyTable = table(stack, 'MaestroIdempotencyTable', {
      attributes: ['pk'],
      partitionKey: 'pk',
      pointInTimeRecovery: true,
    });

    this.eventsDlq = deadLetterQueue(stack, 'SsoEventsDLQ');
    // Events EventBridge could not deliver to SsoEventHandlerFunction land here too.
    undeliveredEventsPolicy(stack, 'SsoEventsDLQPolicy', this.eventsDlq, 'UndeliveredSsoEvents');
    dlqAlarm(
      stack,
      'SsoEventsDLQAlarm',
      this.eventsDlq,
      'Organization or IAM Identity Center events could not be processed and are in the DLQ; the next scheduled reconcile covers them.',
      alertsTopicArn,
    );

    this.scheduledRunsDlq = deadLetterQueue(stack, 'ScheduledRunsDLQ');
    undeliveredEventsPolicy(stack, 'ScheduledRunsDLQPolicy', this.scheduledRunsDlq, 'UndeliveredTicks');
    dlqAlarm(
      stack,
      'ScheduledRunsDLQAlarm',
      this.scheduledRunsDlq,
      'A scheduled run (SSO reconcile, rotation deadlines, discovery tick) failed every retry or was not delivered; the next tick runs anyway.',
      alertsTopicArn,
    );
  }
}

export interface SsoSyncFunctionsProps {
  readonly parameters: Parameters;
  readonly stores: SsoSyncStores;
  readonly api: apigwv2.HttpApi;
  readonly monitorQueue: sqs.IQueue;
  readonly approvalStateMachine: sfn.IStateMachine;
  readonly alertsTopicArn: string;
}

export function addSsoSyncFunctions(stack: Stack, props: SsoSyncFunctionsProps): void {
  const { parameters, stores, approvalStateMachine } = props;

  // The planners (reconcile, API, event handler) read the same model and record their runs.
  const plannerEnvironment = {
    SSO_INSTANCE_ARN: parameters.ssoInstanceArn,
    IDENTITY_STORE_ID: parameters.identityStoreId,
    SSO_MODEL_CONFIG: parameters.ssoModelConfig,
    SSO_PLANS_TABLE: stores.plansTable.ref,
    SSO_CHANGES_QUEUE_URL: stores.changesQueue.queueUrl,
    QUOTA_TABLE: stores.quotaTable.ref,
  };
  // Those that queue changes hold deletes for an approval, and share the sso-admin quota.
  const queueingStatements = () => [
    // Held deletes go to the approval workflow.
    stepFunctionsExecution(approvalStateMachine),
    shareTheSsoAdminQuota(stores.quotaTable.attrArn, 'calls'),
  ];
  // By name: the state machine invokes SsoReconcileFunction, so a reference would be a cycle.
  const reconcileStateMachineArn = Fn.sub(
    'arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-sso-reconcile',
  );

  const reconcile = new MaestroFunction(stack, 'SsoReconcileFunction', {
    crate: 'sso-reconcile',
    description:
      'Begins full SSO reconcile runs (flow B) and does each step of SsoReconcileStateMachine - read a piece of the snapshot, plan, queue a piece of the changes.',
    memorySize: 256,
    timeoutSeconds: 900,
    // A tick that fails every retry is kept for an operator; the next tick runs anyway.
    deadLetterQueue: stores.scheduledRunsDlq,
    environment: {
      ...plannerEnvironment,
      APPROVAL_STATE_MACHINE_ARN: approvalStateMachine.stateMachineArn,
      SSO_RECONCILE_STATE_MACHINE_ARN: reconcileStateMachineArn,
    },
    statements: [
      ...queueingStatements(),
      ...readForFullRun(),
      // Runs, the one-run lease, the snapshot, and the deletes every run made in the
      // guardrail's window (SSO_DELETES).
      recordRuns(stores.plansTable.attrArn, ['PutItem', 'GetItem', 'Query', 'UpdateItem', 'BatchWriteItem']),
      allow(['states:StartExecution'], [reconcileStateMachineArn], { sid: 'StartFullRuns' }),
      // Changes go on the queue as fast as the worker drains it: its backlog is read.
      queueChanges(stores.changesQueue, { readsBacklog: true }),
    ],
  });
  reconcile.onSchedule('Reconcile', parameters.ssoReconcileSchedule, {
    input: '{"dryRun": false, "detail-type": "Scheduled Event"}',
    deadLetterQueue: stores.scheduledRunsDlq,
    retryPolicy: TICK_RETRY_POLICY,
  });
  // A workflow that ends without its own Abort state (timed out, stopped by hand, or failed in
  // Abort itself) still ends its run: recorded as aborted, the lease freed. A run already over
  // keeps its outcome.
  reconcile.onEventBridgeRule(
    'WorkflowEnded',
    {
      source: ['aws.states'],
      'detail-type': ['Step Functions Execution Status Change'],
      detail: {
        status: ['FAILED', 'TIMED_OUT', 'ABORTED'],
        stateMachineArn: [reconcileStateMachineArn],
      },
    },
    {
      inputTransformer: {
        inputPathsMap: { runId: '$.detail.name', status: '$.detail.status' },
        inputTemplate:
          '{"step": "ABORT", "runId": "<runId>", "failure": {"Error": "<status>", "Cause": "the execution ended before the run did"}}',
      },
      deadLetterQueue: stores.scheduledRunsDlq,
      retryPolicy: EVENT_RETRY_POLICY,
    },
  );

  // A full reconcile run (flow B): statemachines/sso-reconcile.asl.json.
  const reconcileLogs = logGroup(stack, 'SsoReconcileLogGroup');
  const reconcileStateMachine = maestroStateMachine(stack, 'SsoReconcileStateMachine', {
    definitionFile: 'sso-reconcile.asl.json',
    name: Fn.sub('${AWS::StackName}-sso-reconcile'),
    substitutions: { SsoReconcileFunctionArn: reconcile.fn.functionArn },
    logGroup: reconcileLogs,
    statements: [lambdaInvoke(reconcile.fn)],
  });
  sumOfProblemsAlarm(
    stack,
    'SsoReconcileFailedAlarm',
    "A full SSO reconcile run aborted, failed or timed out; its record (GET /sso/plan) says why.",
    [
      {
        id: 'failed',
        namespace: 'AWS/States',
        metricName: 'ExecutionsFailed',
        dimension: { name: 'StateMachineArn', value: reconcileStateMachine.stateMachineArn },
      },
      {
        id: 'timedout',
        namespace: 'AWS/States',
        metricName: 'ExecutionsTimedOut',
        dimension: { name: 'StateMachineArn', value: reconcileStateMachine.stateMachineArn },
      },
    ],
    'Failed or timed-out executions',
    props.alertsTopicArn,
  );

  const api = new MaestroFunction(stack, 'SsoApiFunction', {
    crate: 'sso-api',
    description:
      'The SSO sync over HTTP (the latest plan, begin a full run with a dry run by default, and explain from the snapshot).',
    memorySize: 256,
    timeoutSeconds: 29,
    // Every route is the operators' alone.
    environment: {
      ...plannerEnvironment,
      SSO_RECONCILE_STATE_MACHINE_ARN: reconcileStateMachine.stateMachineArn,
      TEAMS_CLAIM: parameters.authTeamsClaim,
      OPERATORS_TEAM: parameters.operatorsTeam,
    },
    statements: [
      // A full run begins here: its workflow reads, plans and queues.
      stepFunctionsExecution(reconcileStateMachine),
      // Runs, the one-run lease, and the snapshot explain reads.
      recordRuns(stores.plansTable.attrArn, ['PutItem', 'GetItem', 'Query', 'UpdateItem']),
    ],
  });
  api.onHttp('LatestPlan', props.api, apigwv2.HttpMethod.GET, '/sso/plan');
  api.onHttp('RunSummary', props.api, apigwv2.HttpMethod.GET, '/sso/runs/{runId}');
  api.onHttp('Reconcile', props.api, apigwv2.HttpMethod.POST, '/sso/reconcile');
  api.onHttp('Explain', props.api, apigwv2.HttpMethod.GET, '/sso/explain');

  const eventHandler = new MaestroFunction(stack, 'SsoEventHandlerFunction', {
    crate: 'sso-event-handler',
    description:
      'Reads again what one Organizations, IAM Identity Center or identity-store event touched into the snapshot and re-plans it (flow A).',
    memorySize: 256,
    timeoutSeconds: 300,
    deadLetterQueue: stores.eventsDlq,
    environment: {
      ...plannerEnvironment,
      APPROVAL_STATE_MACHINE_ARN: approvalStateMachine.stateMachineArn,
      IDEMPOTENCY_TABLE: stores.idempotencyTable.ref,
    },
    statements: [
      ...queueingStatements(),
      ...readWhatAnEventTouched(),
      // Runs, the snapshot it patches, and the deletes every run made in the guardrail's
      // window (SSO_DELETES).
      recordRuns(stores.plansTable.attrArn, ['PutItem', 'GetItem', 'Query', 'BatchWriteItem']),
      allow(['dynamodb:PutItem', 'dynamodb:DeleteItem'], [stores.idempotencyTable.attrArn], {
        sid: 'HandleEachEventOnce',
      }),
      queueChanges(stores.changesQueue),
    ],
  });
  // Organizations events reach only the management account's default bus in us-east-1:
  // infra/us-east-1-forwarder.yaml forwards them here, which the organisation's accounts may.
  new events.CfnEventBusPolicy(stack, 'OrganisationEventsPolicy', {
    eventBusName: 'default',
    statementId: 'maestro-organisation-events',
    statement: {
      Effect: 'Allow',
      Principal: '*',
      Action: 'events:PutEvents',
      Resource: Fn.sub('arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default'),
      Condition: { StringEquals: { 'aws:PrincipalOrgID': '${aws:ResourceOrgID}' } },
    },
  });
  // Events EventBridge could not deliver go to the function's DLQ too.
  const undelivered = { deadLetterQueue: stores.eventsDlq };
  eventHandler.onEventBridgeRule(
    'OrganizationChanges',
    {
      source: ['aws.organizations'],
      'detail-type': ['AWS API Call via CloudTrail', 'AWS Service Event via CloudTrail'],
      detail: {
        eventName: [
          'MoveAccount',
          'TagResource',
          'UntagResource',
          'CreateAccountResult',
          'CloseAccount',
          'UpdateOrganizationalUnit',
        ],
      },
    },
    undelivered,
  );
  eventHandler.onEventBridgeRule(
    'IdentityCenterChanges',
    {
      source: ['aws.sso'],
      'detail-type': ['AWS API Call via CloudTrail'],
      detail: { eventName: ['CreatePermissionSet', 'DeletePermissionSet', 'TagResource', 'UntagResource'] },
    },
    undelivered,
  );
  eventHandler.onEventBridgeRule(
    'GroupChanges',
    {
      source: ['aws.identitystore', 'aws.sso-directory', 'aws.identitystore-scim'],
      'detail-type': ['AWS API Call via CloudTrail'],
      detail: { eventName: ['CreateGroup', 'DeleteGroup', 'UpdateGroup'] },
    },
    undelivered,
  );

  const worker = new MaestroFunction(stack, 'SsoAssignmentWorkerFunction', {
    crate: 'sso-assignment-worker',
    description:
      'Applies planned SSO assignment changes and hands each request to the assignment monitor.',
    environment: {
      SSO_INSTANCE_ARN: parameters.ssoInstanceArn,
      IDENTITY_STORE_ID: parameters.identityStoreId,
      MONITOR_QUEUE_URL: props.monitorQueue.queueUrl,
      CHANGES_QUEUE_URL: stores.changesQueue.queueUrl,
      QUOTA_TABLE: stores.quotaTable.ref,
      SSO_PLANS_TABLE: stores.plansTable.ref,
    },
    statements: [
      shareTheSsoAdminQuota(stores.quotaTable.attrArn, 'callsAndOperations'),
      // A change that waited past a newer plan of its assignment is dropped.
      allow(['dynamodb:BatchGetItem'], [stores.plansTable.attrArn], { sid: 'ReadTheLatestPlans' }),
      // An assignment names three resources, each of which the caller must be allowed (Service
      // Authorization Reference, IAM Identity Center): the instance, the permission set and the
      // account. Only Maestro's instance and its permission sets.
      allow(
        ['sso:CreateAccountAssignment', 'sso:DeleteAccountAssignment'],
        [
          parameters.ssoInstanceArn,
          Fn.sub('arn:${AWS::Partition}:sso:::permissionSet/${InstanceId}/*', {
            InstanceId: Fn.select(1, Fn.split('/', parameters.ssoInstanceArn)),
          }),
          Fn.sub('arn:${AWS::Partition}:sso:::account/*'),
        ],
        { sid: 'ChangeAssignments' },
      ),
      // In the organisation's management account IAM Identity Center provisions the permission
      // set's role (and its SAML provider) with the caller's permissions; in member accounts its
      // service-linked role does. Only the roles under its reserved path and its own provider, as
      // the Identity Center user guide's example policy for managing account assignments scopes them.
      allow(
        [
          'iam:GetRole',
          'iam:CreateRole',
          'iam:DeleteRole',
          'iam:AttachRolePolicy',
          'iam:DetachRolePolicy',
          'iam:PutRolePolicy',
          'iam:DeleteRolePolicy',
          'iam:ListAttachedRolePolicies',
          'iam:ListRolePolicies',
        ],
        [Fn.sub('arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-reserved/sso.amazonaws.com/*')],
        { sid: 'ProvisionRoles' },
      ),
      allow(
        ['iam:GetSAMLProvider', 'iam:CreateSAMLProvider', 'iam:UpdateSAMLProvider'],
        [Fn.sub('arn:${AWS::Partition}:iam::${AWS::AccountId}:saml-provider/AWSSSO_*_DO_NOT_DELETE')],
        { sid: 'ProvisionTheSamlProvider' },
      ),
      allow(['sqs:SendMessageBatch'], [props.monitorQueue.queueArn], { sid: 'HandOverToTheMonitor' }),
      // A change that finds every operation slot taken goes back, delayed, as a new message:
      // waiting must not spend the receives that lead to the DLQ.
      allow(['sqs:SendMessageBatch'], [stores.changesQueue.queueArn], { sid: 'WaitForASlot' }),
    ],
  });
  // IAM Identity Center takes at most 15 outstanding operations and 20 calls a second.
  worker.onSqs('Changes', stores.changesQueue, { batchSize: 10, maximumConcurrency: 2 });
}
