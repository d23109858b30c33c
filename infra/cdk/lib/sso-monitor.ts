// SSO assignment monitor (flow C): SsoAssignmentRequestsQueue -> SsoAssignmentMonitorStarterFunction
// -> SsoAssignmentMonitorStateMachine -> SsoAssignmentMonitorFunction -> AuditTopic
import { Fn, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { dlqAlarm, sumOfProblemsAlarm } from './alarms';
import { MaestroFunction } from './maestro-function';
import { maestroStateMachine } from './maestro-state-machine';
import { Notifications } from './notifications';
import { Parameters } from './parameters';
import {
  allow,
  lambdaInvoke,
  shareTheSsoAdminQuota,
  snsPublishMessage,
  stepFunctionsExecution,
  useNotificationsKey,
} from './policies';
import { deadLetterQueue, logGroup, workQueue } from './stores';

export interface SsoMonitorProps {
  readonly parameters: Parameters;
  readonly notifications: Notifications;
  readonly quotaTable: dynamodb.CfnTable;
  readonly plansTable: dynamodb.CfnTable;
}

export class SsoMonitor {
  /** Where the assignment worker hands each request it made to IAM Identity Center. */
  readonly requestsQueue: sqs.Queue;

  constructor(stack: Stack, props: SsoMonitorProps) {
    const { parameters, notifications } = props;
    const alertsTopicArn = notifications.alertsTopic.ref;

    const requestsDlq = deadLetterQueue(stack, 'SsoAssignmentRequestsDLQ');
    // Six times the starter's timeout, as Lambda advises for queues it polls.
    this.requestsQueue = workQueue(stack, 'SsoAssignmentRequestsQueue', {
      visibilityTimeoutSeconds: 180,
      deadLetterQueue: requestsDlq,
      maxReceiveCount: 3,
    });
    dlqAlarm(
      stack,
      'SsoAssignmentRequestsDLQAlarm',
      requestsDlq,
      'SSO assignment requests could not be monitored and are in the DLQ.',
      alertsTopicArn,
    );

    const status = new MaestroFunction(stack, 'SsoAssignmentMonitorFunction', {
      crate: 'sso-assignment-monitor',
      description:
        'Reads the provisioning status of one SSO account assignment request and decides the next poll.',
      environment: {
        POLL_FIRST_WAIT_SECONDS: parameters.monitorPollFirstWaitSeconds,
        POLL_MAX_WAIT_SECONDS: parameters.monitorPollMaxWaitSeconds,
        POLL_MAX_POLLS: parameters.monitorPollMaxPolls,
        QUOTA_TABLE: props.quotaTable.ref,
        SSO_PLANS_TABLE: props.plansTable.ref,
      },
      statements: [
        // Reports with their run; each change that succeeded into the SSO sync's snapshot.
        allow(['dynamodb:PutItem', 'dynamodb:GetItem', 'dynamodb:BatchWriteItem'], [props.plansTable.attrArn], {
          sid: 'RecordReportsWithTheirRun',
        }),
        shareTheSsoAdminQuota(props.quotaTable.attrArn, 'callsAndOperations'),
        allow(
          ['sso:DescribeAccountAssignmentCreationStatus', 'sso:DescribeAccountAssignmentDeletionStatus'],
          [Fn.sub('arn:${AWS::Partition}:sso:::instance/*')],
        ),
      ],
    });

    const monitorLogs = logGroup(stack, 'SsoAssignmentMonitorLogGroup');
    const monitor = maestroStateMachine(stack, 'SsoAssignmentMonitorStateMachine', {
      definitionFile: 'sso-assignment-monitor.asl.json',
      substitutions: {
        SsoAssignmentMonitorFunctionArn: status.fn.functionArn,
        AuditTopicArn: notifications.auditTopic.ref,
        AlertsTopicArn: alertsTopicArn,
      },
      logGroup: monitorLogs,
      statements: [
        lambdaInvoke(status.fn),
        snsPublishMessage(notifications.auditTopic.ref),
        snsPublishMessage(alertsTopicArn),
        useNotificationsKey(notifications.notificationsKey.attrArn),
      ],
    });

    sumOfProblemsAlarm(
      stack,
      'SsoAssignmentMonitorFailedAlarm',
      'An SSO assignment monitor execution failed or timed out; some requests were not reported.',
      [
        {
          id: 'failed',
          namespace: 'AWS/States',
          metricName: 'ExecutionsFailed',
          dimension: { name: 'StateMachineArn', value: monitor.stateMachineArn },
        },
        {
          id: 'timedout',
          namespace: 'AWS/States',
          metricName: 'ExecutionsTimedOut',
          dimension: { name: 'StateMachineArn', value: monitor.stateMachineArn },
        },
      ],
      'Failed or timed-out executions',
      alertsTopicArn,
    );

    const starter = new MaestroFunction(stack, 'SsoAssignmentMonitorStarterFunction', {
      crate: 'sso-assignment-monitor-starter',
      description: 'Starts one SSO assignment monitor execution per batch of assignment requests.',
      environment: { MONITOR_STATE_MACHINE_ARN: monitor.stateMachineArn },
      statements: [stepFunctionsExecution(monitor)],
    });
    // Polls are bounded by sso-admin's 20 TPS for the whole region.
    starter.onSqs('AssignmentRequests', this.requestsQueue, {
      batchSize: 10,
      maximumBatchingWindowSeconds: 5,
      maximumConcurrency: 2,
    });
  }
}
