import * as path from 'node:path';
import { CfnResource } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { IConstruct } from 'constructs';

/** The repository root, from dist/lib/ where this file runs once compiled. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');

/**
 * Gives an L2 construct's CloudFormation resource the logical id it has in infra/template.yaml
 * (CDK would otherwise derive one from the construct path plus a hash), so that the two
 * templates can be compared resource by resource.
 */
export function sameLogicalId(construct: IConstruct, logicalId: string): CfnResource {
  const resource = construct instanceof CfnResource ? construct : construct.node.defaultChild;
  if (!(resource instanceof CfnResource)) {
    throw new Error(`${construct.node.path} has no CloudFormation resource to name ${logicalId}`);
  }
  resource.overrideLogicalId(logicalId);
  return resource;
}

export function awsManagedPolicy(name: string): iam.IManagedPolicy {
  return iam.ManagedPolicy.fromAwsManagedPolicyName(name);
}
