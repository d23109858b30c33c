// A state machine from statemachines/*.asl.json with the template's logging, tracing and role.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { REPO_ROOT, awsManagedPolicy, sameLogicalId } from './naming';

export interface MaestroStateMachineProps {
  /** The file under statemachines/ that the template's DefinitionUri names. */
  readonly definitionFile: string;
  /** The template's explicit Name, when other resources name the state machine by it. */
  readonly name?: string;
  readonly substitutions: Record<string, string>;
  readonly logGroup: logs.CfnLogGroup;
  /** The template's Policies; the log delivery statement is added by CDK, as SAM's template spells it. */
  readonly statements: iam.PolicyStatement[];
}

export function maestroStateMachine(stack: Stack, logicalId: string, props: MaestroStateMachineProps): sfn.StateMachine {
  // SAM's role trusts states.amazonaws.com without conditions and grants X-Ray through the
  // managed policy; CDK's default role would differ in both.
  const role = new iam.Role(stack, `${logicalId}Role`, {
    assumedBy: new iam.ServicePrincipal('states.amazonaws.com'),
    managedPolicies: [awsManagedPolicy('AWSXrayWriteOnlyAccess')],
  });
  sameLogicalId(role, `${logicalId}Role`);

  // Inline rather than an S3 asset: the definition is the file's text, with the same
  // substitutions `sam package` leaves to CloudFormation.
  const definition = fs.readFileSync(path.join(REPO_ROOT, 'statemachines', props.definitionFile), 'utf8');
  const stateMachine = new sfn.StateMachine(stack, logicalId, {
    stateMachineName: props.name,
    stateMachineType: sfn.StateMachineType.STANDARD,
    definitionBody: sfn.DefinitionBody.fromString(definition),
    definitionSubstitutions: props.substitutions,
    role,
    logs: { destination: props.logGroup, level: sfn.LogLevel.ERROR, includeExecutionData: false },
  });
  const cfn = sameLogicalId(stateMachine, logicalId) as sfn.CfnStateMachine;
  // On the L1 for the same reason as the functions' tracing (maestro-function.ts).
  cfn.tracingConfiguration = { enabled: true };
  for (const statement of props.statements) {
    stateMachine.addToRolePolicy(statement);
  }
  sameLogicalId(role.node.findChild('DefaultPolicy'), `${logicalId}RolePolicy`);
  return stateMachine;
}
