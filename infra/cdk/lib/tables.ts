// DynamoDB tables as the template declares them: on demand, items expire through `expiresAt`,
// SSE on.
import { Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';

export interface TableProps {
  readonly attributes: string[];
  readonly partitionKey: string;
  readonly sortKey?: string;
  readonly globalSecondaryIndexes?: dynamodb.CfnTable.GlobalSecondaryIndexProperty[];
  readonly pointInTimeRecovery: boolean;
}

export function table(stack: Stack, logicalId: string, props: TableProps): dynamodb.CfnTable {
  return new dynamodb.CfnTable(stack, logicalId, {
    billingMode: 'PAY_PER_REQUEST',
    attributeDefinitions: props.attributes.map((attributeName) => ({ attributeName, attributeType: 'S' })),
    keySchema: [
      { attributeName: props.partitionKey, keyType: 'HASH' },
      ...(props.sortKey ? [{ attributeName: props.sortKey, keyType: 'RANGE' }] : []),
    ],
    globalSecondaryIndexes: props.globalSecondaryIndexes,
    timeToLiveSpecification: { attributeName: 'expiresAt', enabled: true },
    pointInTimeRecoverySpecification: props.pointInTimeRecovery
      ? { pointInTimeRecoveryEnabled: true }
      : undefined,
    sseSpecification: { sseEnabled: true },
  });
}

/** A GSI keyed `hash`/`range` that projects the keys plus `attributes`. */
export function index(indexName: string, hash: string, range: string, attributes: string[]) {
  return {
    indexName,
    keySchema: [
      { attributeName: hash, keyType: 'HASH' },
      { attributeName: range, keyType: 'RANGE' },
    ],
    projection: { projectionType: 'INCLUDE', nonKeyAttributes: attributes },
  };
}
