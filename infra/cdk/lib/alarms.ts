// The template's three alarm shapes: a dead-letter queue that holds a message, a metric-math
// sum of two problem counts, and one of Maestro's own metrics reaching one in an hour.
import { Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as sqs from 'aws-cdk-lib/aws-sqs';

const ONE_OR_MORE_IN_ONE_PERIOD = {
  evaluationPeriods: 1,
  threshold: 1,
  comparisonOperator: 'GreaterThanOrEqualToThreshold',
  treatMissingData: 'notBreaching',
};

export function dlqAlarm(
  stack: Stack,
  logicalId: string,
  dlq: sqs.Queue,
  description: string,
  alertsTopicArn: string,
): cloudwatch.CfnAlarm {
  return new cloudwatch.CfnAlarm(stack, logicalId, {
    alarmDescription: description,
    namespace: 'AWS/SQS',
    metricName: 'ApproximateNumberOfMessagesVisible',
    dimensions: [{ name: 'QueueName', value: dlq.queueName }],
    statistic: 'Maximum',
    period: 300,
    ...ONE_OR_MORE_IN_ONE_PERIOD,
    alarmActions: [alertsTopicArn],
  });
}

export interface ProblemMetric {
  readonly id: string;
  readonly namespace: string;
  readonly metricName: string;
  readonly dimension: { readonly name: string; readonly value: string };
}

/** Alarms when `first + second` reaches one in five minutes. */
export function sumOfProblemsAlarm(
  stack: Stack,
  logicalId: string,
  description: string,
  metrics: [ProblemMetric, ProblemMetric],
  label: string,
  alertsTopicArn: string,
): cloudwatch.CfnAlarm {
  return new cloudwatch.CfnAlarm(stack, logicalId, {
    alarmDescription: description,
    metrics: [
      ...metrics.map((metric) => ({
        id: metric.id,
        metricStat: {
          metric: {
            namespace: metric.namespace,
            metricName: metric.metricName,
            dimensions: [metric.dimension],
          },
          period: 300,
          stat: 'Sum',
        },
        returnData: false,
      })),
      { id: 'problems', expression: `${metrics[0].id} + ${metrics[1].id}`, label, returnData: true },
    ],
    ...ONE_OR_MORE_IN_ONE_PERIOD,
    alarmActions: [alertsTopicArn],
  });
}

/** Alarms when Maestro's own metric `metricName` (EMF, no dimensions) reaches one in an hour. */
export function maestroMetricAlarm(
  stack: Stack,
  logicalId: string,
  description: string,
  metricName: string,
  alertsTopicArn: string,
): cloudwatch.CfnAlarm {
  return new cloudwatch.CfnAlarm(stack, logicalId, {
    alarmDescription: description,
    namespace: 'Maestro',
    metricName,
    statistic: 'Maximum',
    period: 3600,
    ...ONE_OR_MORE_IN_ONE_PERIOD,
    alarmActions: [alertsTopicArn],
  });
}
