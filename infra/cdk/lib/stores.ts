// Queue and log group shapes the template repeats.
import { Duration, Stack } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { sameLogicalId } from './naming';
import { stackArn } from './policies';

// SQS-managed SSE everywhere: a KMS key would make every producer hold kms:GenerateDataKey.

/** A dead-letter queue: fourteen days to look at what failed. */
export function deadLetterQueue(stack: Stack, logicalId: string): sqs.Queue {
  const queue = new sqs.Queue(stack, logicalId, {
    retentionPeriod: Duration.days(14),
    encryption: sqs.QueueEncryption.SQS_MANAGED,
  });
  sameLogicalId(queue, logicalId);
  return queue;
}

export interface WorkQueueProps {
  /** Six times the consumer's timeout, as Lambda advises for queues it polls. */
  readonly visibilityTimeoutSeconds: number;
  readonly deadLetterQueue: sqs.IQueue;
  readonly maxReceiveCount: number;
}

export function workQueue(stack: Stack, logicalId: string, props: WorkQueueProps): sqs.Queue {
  const queue = new sqs.Queue(stack, logicalId, {
    visibilityTimeout: Duration.seconds(props.visibilityTimeoutSeconds),
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    deadLetterQueue: { queue: props.deadLetterQueue, maxReceiveCount: props.maxReceiveCount },
  });
  sameLogicalId(queue, logicalId);
  return queue;
}

/** How EventBridge retries a schedule it cannot deliver before it keeps the tick for an operator. */
export const TICK_RETRY_POLICY = { maximumRetryAttempts: 2, maximumEventAgeInSeconds: 3600 };
/** An event that must not be lost: retried for a day, then kept in its DLQ. */
export const EVENT_RETRY_POLICY = { maximumRetryAttempts: 10, maximumEventAgeInSeconds: 86400 };

/** Access and state machine logs: a year, with the default encryption (they hold no request data). */
export function logGroup(stack: Stack, logicalId: string): logs.CfnLogGroup {
  return new logs.CfnLogGroup(stack, logicalId, { retentionInDays: 365 });
}

/** Lets EventBridge rules of this account put the events they could not deliver on `queue`. */
export function undeliveredEventsPolicy(stack: Stack, logicalId: string, queue: sqs.Queue, sid: string): void {
  new sqs.CfnQueuePolicy(stack, logicalId, {
    queues: [queue.queueUrl],
    policyDocument: {
      Version: '2012-10-17',
      Statement: [
        {
          Sid: sid,
          Effect: 'Allow',
          Principal: { Service: 'events.amazonaws.com' },
          Action: 'sqs:SendMessage',
          Resource: queue.queueArn,
          Condition: { ArnLike: { 'aws:SourceArn': stackArn('events', 'rule/*') } },
        },
      ],
    },
  });
}
