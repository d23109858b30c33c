// Secret rotation: Secrets Manager -> SecretRotationFunction (four steps) ->
// SecretRotatedTopic and the default event bus ("Secret Rotated", for consumers)
import { CfnOutput, Fn, Stack } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { dlqAlarm } from './alarms';
import { MaestroFunction } from './maestro-function';
import { Notifications } from './notifications';
import { Parameters } from './parameters';
import {
  ANY_SECRET,
  DEFAULT_EVENT_BUS,
  allow,
  recordActions,
  snsPublishMessage,
  stackArn,
  stepFunctionsExecution,
  useNotificationsKey,
} from './policies';
import { EVENT_RETRY_POLICY, TICK_RETRY_POLICY, deadLetterQueue, undeliveredEventsPolicy } from './stores';

export interface SecretRotationProps {
  readonly parameters: Parameters;
  readonly notifications: Notifications;
  readonly api: apigwv2.HttpApi;
  readonly idempotencyTable: dynamodb.CfnTable;
  readonly scheduledRunsDlq: sqs.IQueue;
  readonly approvalsTable: dynamodb.CfnTable;
  readonly approvalStateMachine: sfn.IStateMachine;
}

export function addSecretRotation(stack: Stack, props: SecretRotationProps): void {
  const { parameters, notifications } = props;
  const alertsTopicArn = notifications.alertsTopic.ref;
  const notificationsKeyArn = notifications.notificationsKey.attrArn;

  const rotatedTopic = notifications.topic(stack, 'SecretRotatedTopic', 'Maestro secret rotated');

  // Named, so that its role can name it: the policies below allow only the secrets that have
  // this function as their rotation function.
  const rotationFunctionArn = stackArn('lambda', 'function:${AWS::StackName}-secret-rotation');
  const rotation = new MaestroFunction(stack, 'SecretRotationFunction', {
    crate: 'secret-rotation',
    functionName: Fn.sub('${AWS::StackName}-secret-rotation'),
    description:
      "Rotates secrets (PostgreSQL users, random values) in Secrets Manager's four steps and tells consumers.",
    timeoutSeconds: 60,
    environment: {
      EVENT_BUS_NAME: 'default',
      SECRET_ROTATED_TOPIC_ARN: rotatedTopic.ref,
      ALERTS_TOPIC_ARN: alertsTopicArn,
    },
    statements: [
      allow(
        [
          'secretsmanager:DescribeSecret',
          'secretsmanager:GetSecretValue',
          'secretsmanager:PutSecretValue',
          'secretsmanager:UpdateSecretVersionStage',
        ],
        [ANY_SECRET],
        {
          sid: 'RotateTheSecretsThatNameThisFunction',
          conditions: { StringEquals: { 'secretsmanager:resource/AllowRotationLambdaArn': rotationFunctionArn } },
        },
      ),
      allow(['secretsmanager:GetSecretValue'], [ANY_SECRET], {
        sid: 'ReadMasterSecrets',
        conditions: { StringEquals: { 'secretsmanager:ResourceTag/maestro:rotation-master': 'true' } },
      }),
      allow(['secretsmanager:GetRandomPassword'], ['*'], { sid: 'MakePasswords' }),
      allow(['events:PutEvents'], [DEFAULT_EVENT_BUS], { sid: 'TellConsumers' }),
      snsPublishMessage(rotatedTopic.ref),
      snsPublishMessage(alertsTopicArn),
      useNotificationsKey(notificationsKeyArn),
    ],
  });
  new lambda.CfnPermission(stack, 'SecretRotationInvokePermission', {
    functionName: rotation.fn.functionName,
    action: 'lambda:InvokeFunction',
    principal: 'secretsmanager.amazonaws.com',
    sourceAccount: stack.account,
  });

  const alertsDlq = deadLetterQueue(stack, 'SecretRotationAlertsDLQ');
  undeliveredEventsPolicy(stack, 'SecretRotationAlertsDLQPolicy', alertsDlq, 'UndeliveredRotationEvents');
  dlqAlarm(
    stack,
    'SecretRotationAlertsDLQAlarm',
    alertsDlq,
    'A rotation failure could not be turned into an alert and is in the DLQ.',
    alertsTopicArn,
  );
  const alerts = new MaestroFunction(stack, 'SecretRotationAlertsFunction', {
    crate: 'secret-rotation-alerts',
    description: "Turns Secrets Manager's RotationFailed and RotationAbandoned events into alerts.",
    deadLetterQueue: alertsDlq,
    environment: { EVENT_BUS_NAME: 'default', ALERTS_TOPIC_ARN: alertsTopicArn },
    statements: [
      snsPublishMessage(alertsTopicArn),
      allow(['events:PutEvents'], [DEFAULT_EVENT_BUS]),
      useNotificationsKey(notificationsKeyArn),
    ],
  });
  alerts.onEventBridgeRule(
    'RotationProblems',
    {
      source: ['aws.secretsmanager'],
      'detail-type': ['AWS Service Event via CloudTrail'],
      detail: { eventName: ['RotationFailed', 'RotationAbandoned'] },
    },
    // Events EventBridge could not deliver to the function land here too.
    { deadLetterQueue: alertsDlq, retryPolicy: EVENT_RETRY_POLICY },
  );

  const monitor = new MaestroFunction(stack, 'SecretRotationMonitorFunction', {
    crate: 'secret-rotation-monitor',
    description:
      'Alerts on secrets rotated by hand as their deadline nears and once it passed, and on automatic rotations that slipped.',
    timeoutSeconds: 120,
    // A tick that fails every retry is kept for an operator; the next tick runs anyway.
    deadLetterQueue: props.scheduledRunsDlq,
    environment: {
      IDEMPOTENCY_TABLE: props.idempotencyTable.ref,
      EVENT_BUS_NAME: 'default',
      ALERTS_TOPIC_ARN: alertsTopicArn,
    },
    statements: [
      allow(['secretsmanager:ListSecrets'], ['*'], { sid: 'ReadSecretsMetadata' }),
      allow(['dynamodb:PutItem', 'dynamodb:DeleteItem'], [props.idempotencyTable.attrArn], { sid: 'OneAlertADay' }),
      allow(['events:PutEvents'], [DEFAULT_EVENT_BUS], { sid: 'Alert' }),
      useNotificationsKey(notificationsKeyArn),
      snsPublishMessage(alertsTopicArn),
    ],
  });
  monitor.onSchedule('CheckDeadlines', parameters.secretRotationMonitorSchedule, {
    deadLetterQueue: props.scheduledRunsDlq,
    retryPolicy: TICK_RETRY_POLICY,
  });

  const api = new MaestroFunction(stack, 'SecretsApiFunction', {
    crate: 'secrets-api',
    description:
      "Secrets over HTTP (rotation status of the caller's secrets, and rotate-now through the approval workflow).",
    environment: {
      APPROVAL_POLICY: parameters.approvalPolicy,
      APPROVALS_TABLE: props.approvalsTable.ref,
      APPROVAL_STATE_MACHINE_ARN: props.approvalStateMachine.stateMachineArn,
      TEAMS_CLAIM: parameters.authTeamsClaim,
      OPERATORS_TEAM: parameters.operatorsTeam,
      SECRET_OWNERS: parameters.secretOwners,
      SECRETS_READABLE: 'true',
    },
    statements: [
      allow(['secretsmanager:ListSecrets', 'secretsmanager:DescribeSecret'], ['*'], { sid: 'ReadSecretsMetadata' }),
      recordActions(props.approvalsTable.attrArn),
      stepFunctionsExecution(props.approvalStateMachine),
    ],
  });
  api.onHttp('RotationStatus', props.api, apigwv2.HttpMethod.GET, '/secrets/rotation-status');
  api.onHttp('RotateNow', props.api, apigwv2.HttpMethod.POST, '/secrets/{id}/rotate');

  new CfnOutput(stack, 'SecretRotationFunctionArn', {
    description:
      "Name this as a secret's rotation function (with a rotationStrategy field or the maestro:rotation-strategy tag).",
    value: rotation.fn.functionArn,
  });
  new CfnOutput(stack, 'SecretRotatedTopicArn', {
    description: 'Subscribe here to hear when a secret rotated, and re-read it.',
    value: rotatedTopic.ref,
  });
}
