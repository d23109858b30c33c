// Maestro's stack as infra/template.yaml declares it: same parameters, same logical ids, same
// wiring. The template stays the source of truth; compare-with-sam.py holds this app to it.
import { Aws, CfnOutput, Stack, StackProps } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { Approvals } from './approvals';
import { addDiscovery, inventoryTable } from './discovery';
import { maestroHttpApi } from './http-apis';
import { Notifications } from './notifications';
import { Parameters } from './parameters';
import { addSecretRotation } from './secret-rotation';
import { SsoMonitor } from './sso-monitor';
import { SsoSyncStores, addSsoSyncFunctions } from './sso-sync';

export class MaestroStack extends Stack {
  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, {
      description:
        'Maestro: cloud operations for AWS organisations (inventory, SSO assignment sync, approvals, secret rotation). ' +
        'Built by the CDK app in infra/cdk from the wiring of infra/template.yaml.',
      ...props,
    });

    const parameters = new Parameters(this);
    const notifications = new Notifications(this);
    const alertsTopicArn = notifications.alertsTopic.ref;
    const api = maestroHttpApi(this, parameters);

    // Stores first: the capabilities below use each other's tables, queues and workflows.
    const sso = new SsoSyncStores(this, alertsTopicArn);
    const inventory = inventoryTable(this);

    const monitor = new SsoMonitor(this, {
      parameters,
      notifications,
      quotaTable: sso.quotaTable,
      plansTable: sso.plansTable,
    });
    const approvals = new Approvals(this, { parameters, api, alertsTopicArn, sso, inventoryTable: inventory });
    addSsoSyncFunctions(this, {
      parameters,
      stores: sso,
      api,
      monitorQueue: monitor.requestsQueue,
      approvalStateMachine: approvals.stateMachine,
      alertsTopicArn,
    });
    addSecretRotation(this, {
      parameters,
      notifications,
      api,
      idempotencyTable: sso.idempotencyTable,
      scheduledRunsDlq: sso.scheduledRunsDlq,
      approvalsTable: approvals.table,
      approvalStateMachine: approvals.stateMachine,
    });
    addDiscovery(this, {
      parameters,
      notifications,
      api,
      inventoryTable: inventory,
      scheduledRunsDlq: sso.scheduledRunsDlq,
      approvalsTable: approvals.table,
      approvalStateMachine: approvals.stateMachine,
    });

    const output = (name: string, description: string, value: string) =>
      new CfnOutput(this, name, { description, value });
    output('SsoAssignmentRequestsQueueUrl', 'Put assignment requests here to have them monitored.', monitor.requestsQueue.queueUrl);
    output(
      'SsoAssignmentRequestsDLQUrl',
      'Assignment request records that could not be monitored.',
      monitor.requestsQueue.deadLetterQueue!.queue.queueUrl,
    );
    output('AuditTopicArn', 'Subscribe here for provisioning reports.', notifications.auditTopic.ref);
    output('AlertsTopicArn', 'Subscribe here for operational alerts.', alertsTopicArn);
    output('SsoPlansTableName', 'Every SSO reconcile run and its plan.', sso.plansTable.ref);
    output('SsoChangesQueueUrl', 'Planned SSO assignment changes on their way to the worker.', sso.changesQueue.queueUrl);
    output(
      'SsoApiEndpoint',
      'The management HTTP API (SSO sync, approvals, secrets, connections, inventory), behind the JWT authorizer (docs/access.md).',
      `https://${api.apiId}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}`,
    );
    output(
      'ApprovalLinksEndpoint',
      "Where the approval emails' links point (public; every link is signed).",
      approvals.linksApi.apiEndpoint,
    );
    output('ApprovalsTableName', 'Every action, approval and decision.', approvals.table.ref);
    output(
      'ApprovalStateMachineArn',
      'Other workflows start this to wrap an action in an approval.',
      approvals.stateMachine.stateMachineArn,
    );
    output(
      'ApprovalSigningKeyName',
      'The secret that signs approval links; rotating it keeps links in flight valid (AWSPREVIOUS still verifies).',
      approvals.signingKey.ref,
    );
    // The rest are declared next to their resources in secret-rotation.ts and discovery.ts.
  }
}
