// Approvals: ApprovalApiFunction (POST /actions) -> ApprovalStateMachine ->
// ApprovalWorkflowFunction (policy, emails via SES, outcome) ... ApprovalDecisionFunction
// (the links, on ApprovalLinksApi) resumes it -> ActionRunnerFunction runs the action.
import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { sumOfProblemsAlarm } from './alarms';
import { approvalLinksApi } from './http-apis';
import { MaestroFunction } from './maestro-function';
import { maestroStateMachine } from './maestro-state-machine';
import { Parameters } from './parameters';
import {
  ANY_SECRET,
  accountAdministersKey,
  allow,
  onlyItems,
  lambdaInvoke,
  queueChanges,
  readTheHeldAccounts,
  recordRuns,
  shareTheSsoAdminQuota,
  stackArn,
  stepFunctionsExecution,
} from './policies';
import { SsoSyncStores } from './sso-sync';
import { logGroup } from './stores';
import { index, table } from './tables';

export interface ApprovalsProps {
  readonly parameters: Parameters;
  readonly api: apigwv2.HttpApi;
  readonly alertsTopicArn: string;
  readonly sso: SsoSyncStores;
  readonly inventoryTable: dynamodb.CfnTable;
}

export class Approvals {
  readonly table: dynamodb.CfnTable;
  readonly stateMachine: sfn.StateMachine;
  readonly linksApi: apigwv2.HttpApi;
  readonly signingKey: secretsmanager.CfnSecret;

  constructor(stack: Stack, props: ApprovalsProps) {
    const { parameters, sso } = props;

    this.table = table(stack, 'ApprovalsTable', {
      attributes: ['pk', 'status', 'createdAt'],
      partitionKey: 'pk',
      // Lists approvals by status; the task token is not projected.
      globalSecondaryIndexes: [index('byStatus', 'status', 'createdAt', ['request', 'votes'])],
      pointInTimeRecovery: true,
    });
    // Deleting or replacing the stack must not take the records (or the key to them) with it.
    this.table.applyRemovalPolicy(RemovalPolicy.RETAIN);

    // Signs the approval links and confirm forms. AWSPREVIOUS still verifies after a rotation,
    // so links in flight keep working; rotate less often than the longest approval timeout.
    // The signing key's own KMS key: whoever reads the secret needs kms:Decrypt on it as well,
    // which only the two approval functions are granted; disabling it stops every link at once.
    const encryptionKey = new kms.CfnKey(stack, 'ApprovalSigningKeyEncryptionKey', {
      description: "Encrypts Maestro's approval links' signing key",
      enableKeyRotation: true,
      keyPolicy: {
        Version: '2012-10-17',
        Statement: [accountAdministersKey(stack)],
      },
    });
    this.signingKey = new secretsmanager.CfnSecret(stack, 'ApprovalSigningKey', {
      description: "Maestro approval links' HMAC key (64 random characters)",
      kmsKeyId: encryptionKey.ref,
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    });
    const decryptTheSigningKey = () =>
      allow(['kms:Decrypt'], [encryptionKey.attrArn], {
        sid: 'DecryptTheSigningKey',
        conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${stack.region}.amazonaws.com` } },
      });
    // Deleting or replacing the stack must not take the records (or the key to them) with it.
    this.signingKey.applyRemovalPolicy(RemovalPolicy.RETAIN);

    this.linksApi = approvalLinksApi(stack);

    const workflow = new MaestroFunction(stack, 'ApprovalWorkflowFunction', {
      crate: 'approval-workflow',
      description:
        "The approval workflow's own steps (check the policy, open the approval and mail the approvers, record the outcome).",
      environment: {
        APPROVAL_POLICY: parameters.approvalPolicy,
        APPROVALS_TABLE: this.table.ref,
        APPROVAL_SENDER: parameters.approvalSender,
        SIGNING_KEY_SECRET: this.signingKey.ref,
        APPROVAL_LINKS_URL: this.linksApi.apiEndpoint,
      },
      statements: [
        // The one function that opens approvals, so the one (with the decision function) that
        // writes their items and task tokens.
        allow(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'], [this.table.attrArn], {
          sid: 'RecordActionsAndApprovals',
          conditions: onlyItems('ACTION#', 'APPROVAL#'),
        }),
        allow(['secretsmanager:GetSecretValue'], [this.signingKey.ref], { sid: 'SignLinks' }),
        decryptTheSigningKey(),
        allow(['ses:SendEmail'], ['*'], {
          sid: 'MailApproversAndRequesters',
          conditions: { StringEquals: { 'ses:FromAddress': parameters.approvalSender } },
        }),
      ],
    });

    const decision = new MaestroFunction(stack, 'ApprovalDecisionFunction', {
      crate: 'approval-decision',
      description:
        'The approval links (a confirm page on GET and HEAD after the approver signs in; the decision on POST) that resume the approval workflow.',
      environment: {
        APPROVALS_TABLE: this.table.ref,
        SIGNING_KEY_SECRET: this.signingKey.ref,
        APPROVER_SIGN_IN: parameters.approverSignIn,
        APPROVER_SIGN_IN_CLIENT_ID: parameters.approverSignInClientId,
        AUTH_ISSUER: parameters.authIssuer,
        AUTH_METADATA_URL: parameters.authMetadataUrl,
      },
      statements: [
        // Approvals' items only. The settle that wins reads the task token back (ReturnValues
        // ALL_OLD), which is why this role alone may resume the workflow.
        allow(['dynamodb:GetItem', 'dynamodb:UpdateItem'], [this.table.attrArn], {
          sid: 'CastVotesAndSettle',
          conditions: onlyItems('APPROVAL#'),
        }),
        allow(['secretsmanager:GetSecretValue'], [this.signingKey.ref], { sid: 'VerifyLinks' }),
        decryptTheSigningKey(),
        // These actions take no resource: the task token names the task, and only the one
        // settle that wins ever reads it.
        allow(['states:SendTaskSuccess', 'states:SendTaskFailure'], ['*'], { sid: 'ResumeTheWorkflow' }),
      ],
    });
    decision.onHttp('ConfirmPage', this.linksApi, apigwv2.HttpMethod.GET, '/approvals/{id}');
    decision.onHttp('ConfirmPageHead', this.linksApi, apigwv2.HttpMethod.HEAD, '/approvals/{id}');
    decision.onHttp('Decide', this.linksApi, apigwv2.HttpMethod.POST, '/approvals/{id}');
    decision.onHttp('SignedIn', this.linksApi, apigwv2.HttpMethod.GET, '/signed-in');

    // Only the two approval functions may read the signing key: GetSecretValue on "*" elsewhere
    // in the account does not reach it.
    new secretsmanager.CfnResourcePolicy(stack, 'ApprovalSigningKeyReaders', {
      secretId: this.signingKey.ref,
      blockPublicPolicy: true,
      resourcePolicy: {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'OnlyTheApprovalFunctionsRead',
            Effect: 'Deny',
            Principal: '*',
            Action: 'secretsmanager:GetSecretValue',
            Resource: '*',
            Condition: {
              ArnNotEquals: { 'aws:PrincipalArn': [workflow.fn.role!.roleArn, decision.fn.role!.roleArn] },
            },
          },
        ],
      },
    });

    const rotationFunctionArn = stackArn('lambda', 'function:${AWS::StackName}-secret-rotation');
    const runner = new MaestroFunction(stack, 'ActionRunnerFunction', {
      crate: 'action-runner',
      description:
        'Runs an action once the approval workflow allows it (SSO held deletes, secret rotate-now, webhooks).',
      memorySize: 256,
      timeoutSeconds: 900,
      environment: {
        SSO_INSTANCE_ARN: parameters.ssoInstanceArn,
        IDENTITY_STORE_ID: parameters.identityStoreId,
        SSO_MODEL_CONFIG: parameters.ssoModelConfig,
        SSO_PLANS_TABLE: sso.plansTable.ref,
        SSO_CHANGES_QUEUE_URL: sso.changesQueue.queueUrl,
        QUOTA_TABLE: sso.quotaTable.ref,
        INVENTORY_TABLE: props.inventoryTable.ref,
      },
      statements: [
        allow(['dynamodb:DeleteItem'], [props.inventoryTable.attrArn], { sid: 'DeleteConnections' }),
        shareTheSsoAdminQuota(sso.quotaTable.attrArn, 'calls'),
        ...readTheHeldAccounts(),
        recordRuns(sso.plansTable.attrArn, ['PutItem', 'GetItem', 'Query', 'BatchWriteItem']),
        queueChanges(sso.changesQueue),
        // Only the secrets whose rotation function is Maestro's, and only with that function
        // (a RotateSecret naming another RotationLambdaARN would re-point the secret).
        allow(['secretsmanager:RotateSecret'], [ANY_SECRET], {
          sid: 'RotateNow',
          conditions: {
            StringEquals: { 'secretsmanager:resource/AllowRotationLambdaArn': rotationFunctionArn },
            StringEqualsIfExists: { 'secretsmanager:RotationLambdaARN': rotationFunctionArn },
          },
        }),
        // RotateSecret needs the caller to be allowed to invoke the rotation function.
        allow(['lambda:InvokeFunction'], [rotationFunctionArn], { sid: 'InvokeTheRotationFunction' }),
      ],
    });

    this.stateMachine = maestroStateMachine(stack, 'ApprovalStateMachine', {
      definitionFile: 'approval.asl.json',
      substitutions: {
        ApprovalWorkflowFunctionArn: workflow.fn.functionArn,
        ActionRunnerFunctionArn: runner.fn.functionArn,
      },
      logGroup: logGroup(stack, 'ApprovalLogGroup'),
      statements: [lambdaInvoke(workflow.fn), lambdaInvoke(runner.fn)],
    });

    const submit = new MaestroFunction(stack, 'ApprovalApiFunction', {
      crate: 'approval-api',
      description: 'Submits actions to the approval workflow and lists actions and approvals.',
      environment: {
        APPROVAL_POLICY: parameters.approvalPolicy,
        APPROVALS_TABLE: this.table.ref,
        APPROVAL_STATE_MACHINE_ARN: this.stateMachine.stateMachineArn,
        TEAMS_CLAIM: parameters.authTeamsClaim,
        OPERATORS_TEAM: parameters.operatorsTeam,
        SECRET_OWNERS: parameters.secretOwners,
        // The stores an action's target is read from, never the caller's word.
        INVENTORY_TABLE: props.inventoryTable.ref,
        SSO_PLANS_TABLE: sso.plansTable.ref,
        SECRETS_READABLE: 'true',
      },
      statements: [
        // Actions' items only: they hold no task token (shared/aws/src/approvals.rs).
        allow(['dynamodb:GetItem', 'dynamodb:PutItem'], [this.table.attrArn], {
          sid: 'RecordAndReadActions',
          conditions: onlyItems('ACTION#'),
        }),
        // Approvals' items without their task token: only the attributes named, and only a
        // projection of them.
        allow(['dynamodb:GetItem'], [this.table.attrArn], {
          sid: 'ReadApprovalsWithoutTheirToken',
          conditions: {
            ...onlyItems('APPROVAL#'),
            'ForAllValues:StringEquals': { 'dynamodb:Attributes': ['pk', 'request', 'status', 'votes'] },
            StringEqualsIfExists: { 'dynamodb:Select': 'SPECIFIC_ATTRIBUTES' },
          },
        }),
        // The index does not project the task token.
        allow(['dynamodb:Query'], [`${this.table.attrArn}/index/byStatus`], { sid: 'ListApprovals' }),
        // An action's target decides its environment and who may ask: the connection's owner,
        // the held deletes of an SSO run, the secret's name.
        allow(['dynamodb:GetItem'], [props.inventoryTable.attrArn], {
          sid: 'ReadConnections',
          conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['CONNECTIONS'] } },
        }),
        allow(['dynamodb:Query'], [sso.plansTable.attrArn], { sid: 'ReadSsoRuns', conditions: onlyItems('SSO_RUN#') }),
        allow(['secretsmanager:DescribeSecret'], [ANY_SECRET], { sid: 'NameSecrets' }),
        stepFunctionsExecution(this.stateMachine),
      ],
    });
    submit.onHttp('SubmitAction', props.api, apigwv2.HttpMethod.POST, '/actions');
    submit.onHttp('GetAction', props.api, apigwv2.HttpMethod.GET, '/actions/{id}');
    submit.onHttp('ListApprovals', props.api, apigwv2.HttpMethod.GET, '/approvals');
    submit.onHttp('GetApproval', props.api, apigwv2.HttpMethod.GET, '/approvals/{id}');

    // Rejections and expiries end executions as typed failures by design, and the requester is
    // told; what needs an operator is a workflow that could not record or mail, or ran too long.
    sumOfProblemsAlarm(
      stack,
      'ApprovalWorkflowProblemsAlarm',
      'The approval workflow could not record an action or mail people after its retries, or an execution timed out.',
      [
        {
          id: 'steps',
          namespace: 'AWS/Lambda',
          metricName: 'Errors',
          dimension: { name: 'FunctionName', value: workflow.fn.functionName },
        },
        {
          id: 'timedout',
          namespace: 'AWS/States',
          metricName: 'ExecutionsTimedOut',
          dimension: { name: 'StateMachineArn', value: this.stateMachine.stateMachineArn },
        },
      ],
      'Failed workflow steps or timed-out executions',
      props.alertsTopicArn,
    );
  }
}
