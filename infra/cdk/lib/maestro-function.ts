// One Rust function with SAM's Globals, and the SAM event types Maestro uses (SQS, EventBridgeRule,
// Schedule, HttpApi) as methods, so that a function here reads like its entry in the template.
import * as path from 'node:path';
import { Duration, Stack } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Bundling } from 'cargo-lambda-cdk/lib/bundling';
import { REPO_ROOT, awsManagedPolicy, sameLogicalId } from './naming';

export interface MaestroFunctionProps {
  /** The crate under functions/; SAM's Metadata.BuildProperties.Binary has the same name. */
  readonly crate: string;
  readonly description: string;
  /** Globals.Function.MemorySize (128) when unset. */
  readonly memorySize?: number;
  /** Seconds; Globals.Function.Timeout (30) when unset. */
  readonly timeoutSeconds?: number;
  readonly functionName?: string;
  readonly environment?: Record<string, string>;
  readonly deadLetterQueue?: sqs.IQueue;
  /** The template's Policies, one statement per SAM statement or policy template. */
  readonly statements: iam.PolicyStatement[];
}

export interface SqsEventProps {
  readonly batchSize: number;
  readonly maximumBatchingWindowSeconds?: number;
  readonly maximumConcurrency: number;
}

export interface RuleEventProps {
  /** Where EventBridge puts what it could not deliver to the function. */
  readonly deadLetterQueue?: sqs.IQueue;
  readonly retryPolicy?: events.CfnRule.RetryPolicyProperty;
  /** What the function receives, built from the event's fields (SAM `InputTransformer`). */
  readonly inputTransformer?: events.CfnRule.InputTransformerProperty;
}

export interface ScheduleEventProps extends RuleEventProps {
  readonly input?: string;
}

export class MaestroFunction {
  readonly fn: lambda.Function;
  private readonly stack: Stack;
  private httpIntegration?: HttpLambdaIntegration;

  constructor(stack: Stack, readonly logicalId: string, props: MaestroFunctionProps) {
    this.stack = stack;
    skipTheCargoLambdaProbeWhenNotBundling(stack);
    this.fn = new RustFunction(stack, logicalId, {
      manifestPath: path.join(REPO_ROOT, 'functions', props.crate, 'Cargo.toml'),
      binaryName: props.crate,
      architecture: lambda.Architecture.ARM_64,
      runtime: 'provided.al2023',
      description: props.description,
      memorySize: props.memorySize ?? 128,
      timeout: Duration.seconds(props.timeoutSeconds ?? 30),
      functionName: props.functionName,
      environment: props.environment,
      deadLetterQueue: props.deadLetterQueue,
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: lambda.ApplicationLogLevel.INFO,
      systemLogLevelV2: lambda.SystemLogLevel.WARN,
    });
    const cfn = sameLogicalId(this.fn, logicalId) as lambda.CfnFunction;
    // SAM grants X-Ray through the AWSXrayWriteOnlyAccess managed policy. The L2 `tracing` prop
    // would add a second, narrower inline grant, so tracing is set on the L1 and the role gets
    // the same managed policy as SAM's role: the two roles then match statement for statement.
    cfn.tracingConfig = { mode: 'Active' };
    const role = this.fn.role as iam.Role;
    sameLogicalId(role, `${logicalId}Role`);
    role.addManagedPolicy(awsManagedPolicy('AWSXrayWriteOnlyAccess'));
    for (const statement of props.statements) {
      this.fn.addToRolePolicy(statement);
    }
    const policy = role.node.tryFindChild('DefaultPolicy');
    if (policy) {
      sameLogicalId(policy, `${logicalId}RolePolicy`);
    }
  }

  /** SAM `Type: SQS`, always with ReportBatchItemFailures. */
  onSqs(eventName: string, queue: sqs.IQueue, props: SqsEventProps): void {
    const id = `${this.logicalId}${eventName}`;
    const mapping = new lambda.EventSourceMapping(this.stack, id, {
      target: this.fn,
      eventSourceArn: queue.queueArn,
      batchSize: props.batchSize,
      maxBatchingWindow:
        props.maximumBatchingWindowSeconds === undefined
          ? undefined
          : Duration.seconds(props.maximumBatchingWindowSeconds),
      reportBatchItemFailures: true,
      maxConcurrency: props.maximumConcurrency,
    });
    sameLogicalId(mapping, id);
    // SAM gives a queue-polling function this managed policy; CDK's SqsEventSource would grant
    // a different set of actions inline, so the mapping is built without it.
    (this.fn.role as iam.Role).addManagedPolicy(awsManagedPolicy('service-role/AWSLambdaSQSQueueExecutionRole'));
  }

  /** SAM `Type: EventBridgeRule` on the default bus. */
  onEventBridgeRule(eventName: string, pattern: Record<string, unknown>, props: RuleEventProps = {}): void {
    this.rule(eventName, { eventPattern: pattern }, props);
  }

  /** SAM `Type: Schedule`. */
  onSchedule(eventName: string, schedule: string, props: ScheduleEventProps = {}): void {
    this.rule(eventName, { scheduleExpression: schedule }, props);
  }

  /** SAM `Type: HttpApi`: one route, authorised by the API's default authorizer. */
  onHttp(eventName: string, api: apigwv2.HttpApi, method: apigwv2.HttpMethod, routePath: string): void {
    const integrationId = `${this.logicalId}Integration`;
    this.httpIntegration ??= new HttpLambdaIntegration(integrationId, this.fn);
    const [route] = api.addRoutes({ path: routePath, methods: [method], integration: this.httpIntegration });
    // The integration grants API Gateway the invoke permission under the route; SAM's name for it.
    sameLogicalId(route.node.findChild(`${integrationId}-Permission`), `${this.logicalId}${eventName}Permission`);
  }

  // Rules, targets and permissions carry SAM's generated names (<Function><Event>, ...LambdaTarget,
  // ...Permission) so the comparison with the SAM template can match them one to one.
  private rule(
    eventName: string,
    trigger: Pick<events.CfnRuleProps, 'eventPattern' | 'scheduleExpression'>,
    props: ScheduleEventProps,
  ): void {
    const id = `${this.logicalId}${eventName}`;
    const rule = new events.CfnRule(this.stack, id, {
      ...trigger,
      targets: [
        {
          id: `${id}LambdaTarget`,
          arn: this.fn.functionArn,
          input: props.input,
          inputTransformer: props.inputTransformer,
          deadLetterConfig: props.deadLetterQueue ? { arn: props.deadLetterQueue.queueArn } : undefined,
          retryPolicy: props.retryPolicy,
        },
      ],
    });
    new lambda.CfnPermission(this.stack, `${id}Permission`, {
      action: 'lambda:InvokeFunction',
      functionName: this.fn.functionName,
      principal: 'events.amazonaws.com',
      sourceArn: rule.attrArn,
    });
  }
}

// cargo-lambda-cdk runs `cargo lambda --version` when the first RustFunction is constructed, to
// choose between local and Docker bundling, even when the synth skips bundling. With bundling
// skipped (`-c aws:cdk:bundling-stacks=[]`, as `make test` does) nothing is built, so the probe is
// skipped too and a synth never starts cargo.
function skipTheCargoLambdaProbeWhenNotBundling(stack: Stack): void {
  if (!stack.bundlingRequired) {
    (Bundling as unknown as { runsLocally?: boolean }).runsLocally = true;
  }
}
